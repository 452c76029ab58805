"""One probe face through the real gateway: upload, a session protecting the policy's attribute,
then rounds answered by `decide` until the owner accepts or `max_rounds` have been seen."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from veil.client import GatewayClient
from veil.images import decode_image
from veil.v1 import anonymizer_pb2, gateway_pb2
from veil_tools.owner.attacker import OwnerAttacker
from veil_tools.owner.policy import Decision, OwnerPolicy, decide


@dataclass
class RoundLog:
    number: int
    attribute_epsilon: dict[str, float]
    identity_epsilon: float
    answer: str
    privacy: float
    utility: list[float]


@dataclass
class ProbeResult:
    subject: str
    session_id: str
    protected_value: bool
    accepted: bool
    rounds: int
    charged_epsilon: float  # 0 when nothing was accepted
    final_attribute_epsilon: float  # the protected attribute's eps in the last round
    log: list[RoundLog] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Everything but the session id, which differs between otherwise identical runs."""
        return {k: v for k, v in asdict(self).items() if k != "session_id"}


def checked_attributes(info: anonymizer_pb2.ModelInfo, protect: str) -> list[str]:
    """The attributes utility is judged on: all but the protected one and those protected with it."""
    implied = {name for a in info.attributes if a.name == protect for name in a.implied_by_protection}
    return [a.name for a in info.attributes if a.name != protect and a.name not in implied]


def play_probe(client: GatewayClient, info: anonymizer_pb2.ModelInfo, attacker: OwnerAttacker,
               policy: OwnerPolicy, face_png: bytes, protected_value: bool, *, subject: str,
               level: int, candidates: int, seed: int) -> ProbeResult:
    attributes = [a.name for a in info.attributes]
    checked = checked_attributes(info, policy.protect)
    original = attacker.probabilities(decode_image(face_png)[None])[0]
    image = client.upload_image(face_png, subject_id=subject)
    session = client.create_session(subject, image, protect=[policy.protect], level=level,
                                    candidates=candidates, seed=seed)
    round_ = session.latest_round
    result = ProbeResult(subject, session.session_id, protected_value, False, 0, 0.0, 0.0)
    while True:
        decision = _judge(client, attacker, policy, attributes, checked, protected_value, original, round_)
        result.rounds += 1
        result.final_attribute_epsilon = round_.attribute_epsilon[policy.protect]
        result.log.append(RoundLog(round_.number, dict(round_.attribute_epsilon), round_.identity_epsilon,
                                   decision.answer, decision.privacy, decision.utility))
        if decision.answer == "accept":
            response = client.feedback(session.session_id, "accept",
                                       candidate=round_.candidates[decision.candidate].index)
            result.accepted = True
            result.charged_epsilon = response.release.charged_epsilon
            return result
        if result.rounds >= policy.max_rounds:
            result.log[-1].answer = "gave up"
            return result
        round_ = client.feedback(session.session_id, decision.answer).round


def _judge(client: GatewayClient, attacker: OwnerAttacker, policy: OwnerPolicy, attributes: list[str],
           checked: list[str], protected_value: bool, original: np.ndarray,
           round_: gateway_pb2.Round) -> Decision:
    if not round_.candidates:  # every candidate refused (an edit never realised): nothing to judge
        return Decision("more", -1, float("nan"), [])
    images = np.stack([decode_image(client.download(c.image.object)) for c in round_.candidates])
    return decide(policy, attributes, checked, protected_value, original, attacker.probabilities(images))
