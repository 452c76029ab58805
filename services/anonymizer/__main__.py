"""`python -m services.anonymizer`: serve the anonymizer (configuration from the environment)."""

from __future__ import annotations

import asyncio
import sys

from services.anonymizer.app import start
from services.anonymizer.config import GRPC_ADDRESS, METRICS_PORT, AnonymizerConfig
from veil.config import from_env
from veil.log import setup_logging
from veil.rpc import InternalAuthConfig, ServerConfig, run_service
from veil.store import StoreConfig, open_store


async def main() -> None:
    server_config = ServerConfig.load(grpc_address=GRPC_ADDRESS, metrics_port=METRICS_PORT)
    setup_logging(server_config.log_level)
    config = AnonymizerConfig.load()
    internal_auth = InternalAuthConfig.load().server_interceptors()
    store_config = from_env(StoreConfig)
    store = open_store(store_config)
    await asyncio.to_thread(store.ensure_bucket)
    app = await start(config, server_config, store, store_config, internal_auth)
    await app.server.wait_for_termination()
    await app.batcher.stop()


if __name__ == "__main__":
    sys.exit(run_service(main, name="veil-anonymizer"))
