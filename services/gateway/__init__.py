"""The veil gateway service: sessions of the interactive privacy loop, the privacy ledger,
releases, and the unlearning requests they cause (veil.v1.Gateway).

    python -m services.gateway

Modules: config (environment), auth (caller token -> tenant), anonymizer and unlearner (clients
of the other two services), rounds (generating a round of candidates), releases (publication and
its crash recovery), unlearning (the dispatcher of unlearning batches and the retention of
originals), recovery (the background loop that finishes work a dead replica left), workflow
(the session state machine, uploads and downloads, without gRPC), idempotency (request ids),
convert (records <-> messages), servicer (the RPCs: convert and delegate), metrics. All state
is in SQL (services.gateway.state), so replicas share nothing in memory.
"""
