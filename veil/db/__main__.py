"""`python -m veil.db`: apply or wait for a service's migrations.

    python -m veil.db migrate --service gateway [--url URL]

(a Kubernetes Job does exactly this). It is idempotent, and concurrent runs are safe: on
PostgreSQL they serialise on an advisory lock, on SQLite on the database write lock.

    python -m veil.db wait --service gateway [--timeout-seconds N]

returns once the database is at the revision this code expects (a Deployment's init container
runs it, so a new release serves only after its migration Job has run); it never migrates.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from veil.config import from_env
from veil.db.config import DatabaseConfig
from veil.db.engine import create_engine
from veil.db.migrations import migrate, wait_for_schema
from veil.errors import ConfigError, FailedPrecondition, InvalidArgument, Unavailable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m veil.db", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("migrate", help="apply a service's migrations (idempotent)")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    wait = commands.add_parser("wait", help="wait until a service's tables are at this code's revision")
    wait.add_argument("--timeout-seconds", type=float, default=300.0,
                      help="give up (exit 1) after this long (default: 300)")
    for command in (up, wait):
        command.add_argument("--service", required=True, help="service whose tables, e.g. gateway")
        command.add_argument("--url", help="database URL (default: VEIL_DATABASE_URL)")
    args = parser.parse_args(argv)
    try:
        config = from_env(DatabaseConfig)
        if args.url:
            config = dataclasses.replace(config, url=args.url)
        engine = create_engine(config)
        try:
            if args.command == "migrate":
                message = f"database at revision {migrate(args.service, engine, args.revision)}"
            else:
                message = str(wait_for_schema(args.service, engine, args.timeout_seconds))
        finally:
            engine.dispose()
    except FailedPrecondition as exc:
        print(f"veil.db {args.command}: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, InvalidArgument, Unavailable) as exc:
        print(f"veil.db {args.command}: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.service}: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
