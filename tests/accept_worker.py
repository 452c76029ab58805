"""A second "gateway replica" for the concurrency tests: accepts the given sessions from many
threads at once and prints one JSON line of outcomes. Not a test module (run as a script).

Protocol: prints "ready", waits for "go" on stdin, runs, prints the JSON result.
"""

import argparse
import json
import sys
import threading

from veil.db import Database, DatabaseConfig
from veil.errors import FailedPrecondition
from veil.ledger import LedgerConfig
from services.gateway.state import GatewayState


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--cap", type=float, required=True)
    parser.add_argument("--sessions", required=True, help="comma-separated session ids")
    args = parser.parse_args()
    state = GatewayState(Database.from_config(DatabaseConfig(url=args.url)),
                         ledger=LedgerConfig(cap=args.cap, delta=1e-6))
    session_ids = args.sessions.split(",")
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(len(session_ids))

    def accept(session_id: str) -> None:
        barrier.wait()
        try:
            state.releases.accept(args.tenant, session_id, 0, request_id=f"req-{session_id}",
                                  release_key=f"releases/{session_id}.png", dependent_models=[],
                                  actor="worker")
            outcomes[session_id] = "charged"
        except FailedPrecondition:
            outcomes[session_id] = "refused"
        except Exception as exc:  # reported to the test, which fails on it
            outcomes[session_id] = f"error: {exc!r}"

    threads = [threading.Thread(target=accept, args=(sid,)) for sid in session_ids]
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit("expected 'go'")
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state.close()
    print(json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    main()
