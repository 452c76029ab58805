"""The demo's session through veil.client: create at a level, MORE_PRIVACY, LESS_PRIVACY, then
ACCEPT one candidate of the last round; every candidate and the release downloaded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from veil.client import GatewayClient
from veil.errors import VeilError
from veil.images import decode_image
from veil.v1 import gateway_pb2

ANSWERS = ("more", "less")  # then accept


@dataclass
class PlayedRound:
    message: gateway_pb2.Round
    images: list[np.ndarray]
    answer: str = ""  # "more", "less" or "accept <k>"


@dataclass
class PlayedSession:
    session: gateway_pb2.Session
    rounds: list[PlayedRound] = field(default_factory=list)
    release: gateway_pb2.Release | None = None
    released: np.ndarray | None = None


def _played(client: GatewayClient, round_: gateway_pb2.Round) -> PlayedRound:
    images = [decode_image(client.download(c.image.object)) for c in round_.candidates]
    return PlayedRound(round_, images)


def play(client: GatewayClient, subject_png: bytes, *, subject: str, protect: list[str],
         level: int, candidates: int, accept: int, seed: int,
         say: Callable[[str], None]) -> PlayedSession:
    image = client.upload_image(subject_png, subject_id=subject)
    session = client.create_session(subject, image, protect=protect, level=level,
                                    candidates=candidates, seed=seed)
    played = PlayedSession(session, [_played(client, session.latest_round)])
    say(f"session {session.session_id}: round 1 at level {level}")
    for answer in ANSWERS:
        response = client.feedback(session.session_id, answer)
        played.rounds[-1].answer = answer
        played.rounds.append(_played(client, response.round))
        say(f"feedback {answer!r} -> round {response.round.number}: "
            f"{describe_budget(response.round)}")
    offered = played.rounds[-1].message.candidates
    if accept >= len(offered):
        raise VeilError(f"round {len(played.rounds)} offers {len(offered)} candidate(s) (the others were refused); "
                        f"cannot accept the offered candidate {accept}")
    response = client.feedback(session.session_id, "accept", candidate=offered[accept].index)
    played.rounds[-1].answer = f"accept {accept}"
    played.session = response.session
    played.release = response.release
    played.released = decode_image(client.download(response.release.image.object))
    say(f"accepted candidate {offered[accept].index} of round {len(played.rounds)}: charged eps "
        f"{response.release.charged_epsilon:.3f}, composed "
        f"{response.release.ledger.composed_epsilon:.3f} of cap {response.release.ledger.cap:g}")
    return played


def describe_budget(round_: gateway_pb2.Round) -> str:
    attributes = ", ".join(f"{name} eps {eps:.3g}"
                           for name, eps in sorted(round_.attribute_epsilon.items()))
    identity = (f"identity eps {round_.identity_epsilon:.3g}" if round_.identity_epsilon
                else "identity kept")
    return f"{attributes}, {identity}, rho {round_.rho:.2g}"
