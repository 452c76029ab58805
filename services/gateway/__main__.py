"""`python -m services.gateway`: serve veil.v1.Gateway (default [::]:50050, metrics on 9100).

Start-up: read and validate every setting; open the database (the embedded SQLite database is
migrated here; on PostgreSQL the migration Job must have run: the gateway refuses to start on a
schema behind its code); check the object store's bucket; start serving; then, in the
background, finish what a dead replica left (releases, rounds) and run the unlearning
dispatcher with retention. Health "" (liveness) turns SERVING once the server listens;
veil.v1.Gateway (readiness) is SERVING while the anonymizer answers its health checks
(services.gateway.dependencies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from concurrent.futures import ThreadPoolExecutor

from services.gateway.anonymizer import AnonymizerClient
from services.gateway.auth import AuthInterceptor, TenantTokens
from services.gateway.config import GRPC_ADDRESS, METRICS_PORT, GatewayConfig
from services.gateway.dependencies import CircuitBreaker, DependencyMonitor
from services.gateway.events import SessionEvents
from services.gateway.idempotency import ResponseOnce
from services.gateway.recovery import Recovery
from services.gateway.releases import ReleasePublisher
from services.gateway.rounds import RoundGenerator
from services.gateway.servicer import GatewayServicer
from services.gateway.unlearner import UnlearnerClient
from services.gateway.unlearning import UnlearningDispatcher
from services.gateway.workflow import SessionWorkflow
from veil.config import from_env
from veil.db import DatabaseConfig, schema_state
from veil.errors import ConfigError
from veil.log import setup_logging
from veil.rpc import ChannelConfig, InternalAuthConfig, ServerConfig, VeilServer, open_channel, run_service
from services.gateway.state import SERVICE, GatewayState
from veil.store import StoreConfig, open_store
from veil.v1 import gateway_pb2_grpc

ANONYMIZER_SERVICE = "veil.v1.Anonymizer"
GATEWAY_SERVICE = "veil.v1.Gateway"

log = logging.getLogger("services.gateway")

# Database and object-store calls run in threads; enough for many concurrent RPCs (each holds a
# thread only for one call, and the database pool bounds what runs at once).
WORKER_THREADS = 32


def open_state() -> GatewayState:
    embedded = from_env(DatabaseConfig).url.startswith("sqlite")
    state = GatewayState.from_env(migrate_schema=embedded)
    schema = schema_state(SERVICE, state.db.engine)
    if not schema.ready:
        state.close()
        raise ConfigError(f"{schema}; run `python -m veil.db migrate --service {SERVICE}`")
    return state


async def main() -> None:
    server_config = ServerConfig.load(grpc_address=GRPC_ADDRESS, metrics_port=METRICS_PORT)
    setup_logging(server_config.log_level)
    config = GatewayConfig.load()
    channels = ChannelConfig.load()
    present_secret = InternalAuthConfig.load().client_interceptors()
    tokens = TenantTokens(config.tenant_tokens_file)
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="gateway"))
    state = await asyncio.to_thread(open_state)
    store = open_store(from_env(StoreConfig))
    await asyncio.to_thread(store.ensure_bucket)

    anonymizer_channel = open_channel(config.anonymizer_target, channels, present_secret)
    breaker = CircuitBreaker("anonymizer", config.anonymizer_breaker_failures,
                             config.anonymizer_breaker_cooldown_seconds)
    anonymizer = AnonymizerClient(anonymizer_channel, config.anonymizer_timeout_seconds, breaker)
    unlearner_channel = unlearner = None
    if config.unlearner_target is None:
        log.warning("VEIL_UNLEARNER_TARGET is unset: no model is updated after a release")
    else:
        unlearner_channel = open_channel(config.unlearner_target, channels, present_secret)
        unlearner = UnlearnerClient(unlearner_channel, config.unlearner_timeout_seconds,
                                    config.unlearning_method)
    events = SessionEvents()
    rounds = RoundGenerator(state, anonymizer, store, events, config.round_lease_seconds)
    publisher = ReleasePublisher(state, store)
    workflow = SessionWorkflow(state, store, anonymizer, unlearner, rounds, publisher, events, config)
    servicer = GatewayServicer(workflow, ResponseOnce(state.idempotency), config.max_upload_bytes)
    server = VeilServer(server_config, [(gateway_pb2_grpc.add_GatewayServicer_to_server, servicer)],
                        interceptors=[AuthInterceptor(tokens)])
    await server.start()
    recovery = Recovery(state, publisher, rounds, round_lease=config.round_lease_seconds)
    dispatcher = UnlearningDispatcher(state, unlearner, store,
                                      batch_size=config.unlearning_batch_size,
                                      max_attempts=config.unlearning_max_attempts)
    monitor = DependencyMonitor(
        anonymizer_channel, ANONYMIZER_SERVICE, breaker,
        lambda ready: server.set_serving(ready, GATEWAY_SERVICE), config.dependency_check_timeout_seconds)
    # Liveness ("") is the process's own; readiness (veil.v1.Gateway) follows the anonymizer.
    await server.set_serving(True, "")
    await monitor.check()
    background = [asyncio.create_task(recovery.run_forever(config.recovery_interval_seconds)),
                  asyncio.create_task(dispatcher.run_forever(config.unlearning_poll_seconds)),
                  asyncio.create_task(monitor.run_forever(config.dependency_check_seconds))]
    try:
        await server.wait_for_termination()
    finally:
        for task in background:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*background)
        for channel in (anonymizer_channel, unlearner_channel):
            if channel is not None:
                await channel.close()
        state.close()


if __name__ == "__main__":
    sys.exit(run_service(main, name="veil-gateway"))
