"""`python -m services.unlearner`: serve veil.v1.Unlearner (default [::]:50052, metrics on 9102).

Start-up: read and validate every setting; open the database (the embedded SQLite database is
migrated here; on PostgreSQL the migration Job must have run: the unlearner refuses to start on a
schema behind its code); check the object store's bucket; start serving and the job workers
(which first resume jobs a dead process left running, once their leases expire). On SIGTERM the
workers stop claiming, running jobs stop at their next progress report and go back to the queue.
"""

from __future__ import annotations

import asyncio
import sys

from services.unlearner.config import GRPC_ADDRESS, METRICS_PORT, UnlearnerConfig
from services.unlearner.jobs import JobRunner
from services.unlearner.jobstore import JobStore
from services.unlearner.servicer import UnlearnerServicer
from services.unlearner.tables import SERVICE
from veil.config import from_env
from veil.db import DatabaseConfig, open_service_database
from veil.log import setup_logging
from veil.rpc import InternalAuthConfig, ServerConfig, VeilServer, run_service
from veil.store import StoreConfig, open_store
from veil.v1 import unlearner_pb2_grpc


async def main() -> None:
    server_config = ServerConfig.load(grpc_address=GRPC_ADDRESS, metrics_port=METRICS_PORT)
    setup_logging(server_config.log_level)
    config = UnlearnerConfig.load()
    internal_auth = InternalAuthConfig.load().server_interceptors()
    db = await asyncio.to_thread(open_service_database, SERVICE, from_env(DatabaseConfig))
    try:
        store = open_store(from_env(StoreConfig))
        await asyncio.to_thread(store.ensure_bucket)
        jobs = JobStore(db)
        runner = JobRunner(jobs, store, config)
        servicer = UnlearnerServicer(store, jobs, runner, config)
        server = VeilServer(server_config, [(unlearner_pb2_grpc.add_UnlearnerServicer_to_server, servicer)],
                            interceptors=internal_auth)
        await server.start()
        runner.start()
        await server.set_serving(True)
        try:
            await server.wait_for_shutdown()
        finally:
            # Running jobs stop at once (and go back to the queue) while RPCs drain.
            await runner.stop(server_config.shutdown_grace_seconds)
        await server.wait_for_termination()
    finally:
        db.dispose()


if __name__ == "__main__":
    sys.exit(run_service(main, name="veil-unlearner"))
