"""The veil unlearner service: the registry of published models, Train and Unlearn jobs, and
Evaluate (veil.v1.Unlearner), over the feature-unlearning library veil.unlearning.

    python -m services.unlearner

Modules: config (environment), tables and jobstore (the job table: idempotent creation, claims
with a lease, end states), specs (what a job does, as stored), jobs (the runner: workers, torch
work in threads, heartbeats, resumption after a crash), convert (records <-> messages), servicer
(the RPCs), metrics. Job state is in SQL (ul_ tables), models in the object store.
"""
