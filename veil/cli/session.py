"""`veil session create | feedback | show | list | ledger | close | delete-upload`: the feedback
loop from a terminal.

    veil session create face.png --subject alice --protect Male --level 5 --candidates 4
    veil session feedback SESSION more            # or: less | accept 2 | eps Male=1 identity=4
    veil session show SESSION
    veil session ledger alice
    veil session close SESSION                    # end it without a release
    veil session delete-upload SHA256_OR_KEY      # delete an original no active session uses

Candidates and releases are downloaded to --out (default ./veil-sessions) as
<out>/<session>/round-<n>/candidate-<k>.png and <out>/<session>/release.png, and their paths are
printed. The gateway and the token come from VEIL_GATEWAY_TARGET and VEIL_TOKEN, or --target and
--token.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
from google.protobuf.json_format import MessageToJson

from veil.client import describe_faces, file_suffix
from veil.errors import InvalidArgument
from veil.privacy import ATTRIBUTE_MECHANISMS, Mechanism
from veil.v1 import common_pb2, gateway_pb2


def register(subparsers: argparse._SubParsersAction) -> None:
    session = subparsers.add_parser("session", help="interactive privacy sessions on the gateway")
    commands = session.add_subparsers(dest="session_command", required=True, metavar="COMMAND")

    create = commands.add_parser("create", help="upload an image and start a session")
    create.add_argument("image", type=Path, help="a PNG or JPEG of the model's size")
    create.add_argument("--subject", required=True, help="the data subject the image shows")
    create.add_argument("--protect", required=True,
                        help="comma-separated attributes to protect, e.g. Male,Young")
    create.add_argument("--level", type=int, default=None,
                        help="privacy level 1..10 (default: the model's default level)")
    create.add_argument("--eps", default=None, metavar="ATTR=EPS,...",
                        help="explicit eps per protected attribute, e.g. Male=1,Young=0.5")
    create.add_argument("--identity-eps", type=float, default=0.0,
                        help="with --eps: eps of the identity mechanism (0: identity not protected)")
    create.add_argument("--rho", type=float, default=0.0, help="with --eps: fraction of x_T re-drawn")
    create.add_argument("--mechanism", default=Mechanism.RANDOMIZED_RESPONSE.value,
                        choices=[m.value for m in ATTRIBUTE_MECHANISMS], help="with --eps")
    create.add_argument("--candidates", type=int, default=0, help="candidates per round (default 4)")
    create.add_argument("--seed", type=int, default=0, help="seed of the rounds (0: random)")
    _common(create)
    create.set_defaults(func=_create)

    feedback = commands.add_parser("feedback", help="answer the latest round")
    feedback.add_argument("session_id")
    feedback.add_argument("answer", nargs="+", metavar="ANSWER",
                          help="more | less | accept K | eps ATTR=EPS [ATTR=EPS ...]")
    _common(feedback)
    feedback.set_defaults(func=_feedback)

    show = commands.add_parser("show", help="a session, its latest round and its release")
    show.add_argument("session_id")
    show.add_argument("--json", action="store_true", help="print the Session message as JSON")
    _common(show)
    show.set_defaults(func=_show)

    listing = commands.add_parser("list", help="the tenant's sessions, newest first")
    listing.add_argument("--subject", default="", help="only this subject's")
    _common(listing)
    listing.set_defaults(func=_list)

    ledger = commands.add_parser("ledger", help="a subject's privacy ledger")
    ledger.add_argument("subject")
    ledger.add_argument("--json", action="store_true", help="print the Ledger message as JSON")
    _common(ledger)
    ledger.set_defaults(func=_ledger)

    close = commands.add_parser("close", help="end an active session without a release")
    close.add_argument("session_id")
    _common(close)
    close.set_defaults(func=_close)

    delete = commands.add_parser("delete-upload",
                                 help="delete an uploaded original no active session uses")
    delete.add_argument("upload", help="its sha256, or its key (uploads/<sha256>.<ext>)")
    _common(delete)
    delete.set_defaults(func=_delete_upload)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=None, help="gateway host:port (default: VEIL_GATEWAY_TARGET)")
    parser.add_argument("--token", default=None, help="caller token (default: VEIL_TOKEN)")
    parser.add_argument("--out", type=Path, default=Path("veil-sessions"),
                        help="where candidates and releases are downloaded")


def parse_epsilons(items: list[str]) -> dict[str, float]:
    """{"Male": 1.0} from ["Male=1"] or ["Male=1,Young=0.5"]."""
    budget: dict[str, float] = {}
    for item in ",".join(items).split(","):
        name, sep, value = item.partition("=")
        try:
            budget[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise InvalidArgument(f"expected ATTR=EPS, got {item!r}")
    return budget


def _client(args: argparse.Namespace):
    from veil.client import client_from_env

    return client_from_env(args.target, args.token)


def _calling(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Gateway errors as one line naming the status code (exit status 2)."""
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except grpc.RpcError as exc:
            print(f"veil session {args.session_command}: {exc.code().name}: {exc.details()}",
                  file=sys.stderr)
            return 2
    return run


def _print_round(client, session_id: str, round_: gateway_pb2.Round, out: Path) -> None:
    budget = ", ".join(f"{name} eps={eps:g}" for name, eps in sorted(round_.attribute_epsilon.items()))
    identity = f"identity eps={round_.identity_epsilon:g}" if round_.identity_epsilon else "identity kept"
    level = f"level {round_.level}" if round_.level >= 0 else "set by feedback"
    print(f"round {round_.number}: {budget}, {identity}, rho={round_.rho:g} ({level})")
    folder = out / session_id / f"round-{round_.number}"
    for candidate in round_.candidates:
        path = folder / f"candidate-{candidate.index}{file_suffix(candidate.image.object)}"
        client.download(candidate.image.object, path)
        print(f"  candidate {candidate.index}: {path} ({candidate.image.width}x{candidate.image.height}; "
              f"{describe_faces(candidate.faces)})")
    for refused in round_.refused:
        print(f"  candidate {refused.index}: refused: {refused.reason}")
    if not round_.candidates:
        print("  no candidate offered: answer with more, less or eps for a new round")


def _print_release(client, session_id: str, release: gateway_pb2.Release, out: Path) -> None:
    path = out / session_id / f"release{file_suffix(release.image.object)}"
    client.download(release.image.object, path)
    print(f"released: {path} ({describe_faces(release.faces)})")
    print(f"charged eps {release.charged_epsilon:g}; subject total: {_totals(release.ledger)}")
    if release.unlearning_request_ids:
        print(f"unlearning requests queued: {', '.join(release.unlearning_request_ids)}")


def _totals(summary: gateway_pb2.LedgerSummary) -> str:
    return (f"composed eps {summary.composed_epsilon:.4f} at delta {summary.delta:g} (plain sum "
            f"{summary.sum_epsilon:g}), cap {summary.cap:g}, remaining {summary.remaining:.4f}")


def _print_session(session: gateway_pb2.Session) -> None:
    state = gateway_pb2.SessionState.Name(session.state).removeprefix("SESSION_STATE_").lower()
    print(f"session {session.session_id} ({state}), subject {session.subject_id}, protecting "
          f"{', '.join(session.protect)}, {session.round_count} round(s)")


@_calling
def _create(args: argparse.Namespace) -> int:
    protect = [a.strip() for a in args.protect.split(",") if a.strip()]
    with _client(args) as client:
        image = client.upload_image(args.image, subject_id=args.subject)
        session = client.create_session(
            args.subject, image, protect=protect, level=args.level,
            epsilon=parse_epsilons([args.eps]) if args.eps else None,
            identity_epsilon=args.identity_eps, rho=args.rho, mechanism=args.mechanism,
            candidates=args.candidates, seed=args.seed)
        _print_session(session)
        _print_round(client, session.session_id, session.latest_round, args.out)
    return 0


@_calling
def _feedback(args: argparse.Namespace) -> int:
    answer, *rest = args.answer
    candidate, epsilon = 0, None
    if answer == "accept":
        if len(rest) != 1 or not rest[0].isdigit():
            raise InvalidArgument("accept takes the index of a candidate, e.g. accept 2")
        candidate = int(rest[0])
    elif answer == "eps":
        if not rest:
            raise InvalidArgument("eps takes ATTR=EPS values, e.g. eps Male=1 identity=4")
        epsilon = parse_epsilons(rest)
    elif answer not in ("more", "less") or rest:
        raise InvalidArgument(f"unknown answer {' '.join(args.answer)!r}; use more, less, "
                              f"accept K or eps ATTR=EPS")
    with _client(args) as client:
        response = client.feedback(args.session_id, answer, candidate=candidate, epsilon=epsilon)
        _print_session(response.session)
        if response.HasField("release"):
            _print_release(client, args.session_id, response.release, args.out)
        else:
            _print_round(client, args.session_id, response.round, args.out)
    return 0


@_calling
def _show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        session = client.get_session(args.session_id)
        if args.json:
            print(MessageToJson(session, preserving_proto_field_name=True))
            return 0
        _print_session(session)
        if session.HasField("latest_round"):
            _print_round(client, session.session_id, session.latest_round, args.out)
        if session.HasField("release"):
            _print_release(client, session.session_id, session.release, args.out)
    return 0


@_calling
def _list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for session in client.list_sessions(args.subject):
            _print_session(session)
    return 0


@_calling
def _ledger(args: argparse.Namespace) -> int:
    with _client(args) as client:
        ledger = client.ledger(args.subject)
    if args.json:
        print(MessageToJson(ledger, preserving_proto_field_name=True))
        return 0
    print(f"subject {ledger.subject_id}: {_totals(ledger.summary)}")
    for entry in ledger.entries:
        print(f"  {entry.created_at.ToDatetime():%Y-%m-%d %H:%M:%S} session {entry.session_id} "
              f"receipt {entry.receipt_id}: eps {entry.epsilon:g}")
    return 0


@_calling
def _close(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_session(client.close_session(args.session_id))
    return 0


@_calling
def _delete_upload(args: argparse.Namespace) -> int:
    upload = args.upload
    with _client(args) as client:
        deleted = client.delete_upload(common_pb2.ObjectRef(key=upload) if "/" in upload else upload)
    print(f"deleted {deleted.image.key} (sha256 {deleted.image.sha256}); "
          f"{deleted.sessions} ended session(s) had used it")
    return 0
