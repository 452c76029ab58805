"""Verified edits: a candidate is offered only if it shows the values the mechanism released.

After decoding, the model's attribute classifier reads each attribute released by randomized
response. A candidate that reads otherwise is decoded again, up to `max_tries` decodes in all,
each with fresh randomness (a fraction `retry_rho` of its start point re-drawn) and stronger
guidance; its receipt records how many decodes it took. One that never agrees is not offered:
its place holds the attributes that still read otherwise. The released values never change
between tries (re-drawing them until an edit "works" would spend budget the receipt does not
show), so the retries are post-processing of the release.

The retries draw from their own stream, seeded from a hash of the plan's seed: a generator
seeded with the plan's seed itself would replay the mechanism's coins, and noise that is a
function of the coin and the released value is a function of the original value.

`Anonymizer.offers` applies this per plan when the anonymizer is configured with `decode_tries`,
so a batch that decoded the plans of several requests together verifies each plan after it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from veil.diffusion.mechanisms import resample_start
from veil.errors import InvalidArgument
from veil.privacy import Mechanism

if TYPE_CHECKING:  # anonymize imports this module to verify its own plans
    from veil.diffusion.anonymize import AnonymizedImage, Anonymizer, ProgressFn, Receipt, ReleasePlan

MAX_TRIES = 10
MAX_GUIDANCE = 20.0  # SamplingConfig's bound


@dataclass(frozen=True)
class VerifiedCandidate:
    image: AnonymizedImage | None  # None: never read as released, not offered
    tries: int
    disagreeing: tuple[str, ...]  # the attributes a refused candidate still reads otherwise
    receipt: Receipt  # with decode_tries; a refused candidate's too (its release was drawn)

    @property
    def offered(self) -> bool:
        return self.image is not None


def require_tries(max_tries: int, what: str = "max_tries") -> int:
    if isinstance(max_tries, bool) or not isinstance(max_tries, int) or not 1 <= max_tries <= MAX_TRIES:
        raise InvalidArgument(f"{what} must be an integer in 1..{MAX_TRIES}, got {max_tries!r}")
    return max_tries


def _retry_generator(seed: int) -> torch.Generator:
    digest = hashlib.sha256(b"veil.diffusion.verify:" + seed.to_bytes(8, "big")).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)


class EditVerifier:
    def __init__(self, anonymizer: Anonymizer, max_tries: int = 3, guidance_step: float = 2.0,
                 retry_rho: float = 0.5) -> None:
        self.anonymizer = anonymizer
        self.max_tries = require_tries(max_tries)
        self.guidance_step = guidance_step
        self.retry_rho = retry_rho

    def verify(self, plan: ReleasePlan, pixels: Sequence[np.ndarray],
               progress: ProgressFn | None = None) -> list[list[VerifiedCandidate]]:
        """The plan's decoded `pixels` checked, re-decoding the rows that disagree: [image][candidate].
        `progress` sees each step of a decode again as stage "verify" (how many there will be is
        known only once each try is read)."""
        anonymizer = self.anonymizer
        retry_progress = None if progress is None else (lambda _stage, step, total: progress("verify", step, total))
        pixels = list(pixels)
        checked = self._checked(plan)
        tries = np.ones(len(plan), dtype=int)
        wrong = self._disagreeing(plan, pixels, checked)
        gen = _retry_generator(plan.seed)
        for attempt in range(1, self.max_tries):
            rows = np.flatnonzero(wrong.any(axis=1))
            if len(rows) == 0:
                break
            guidance = min(MAX_GUIDANCE, anonymizer.sampling.guidance + attempt * self.guidance_step)
            index = torch.from_numpy(rows).to(plan.released.device)
            retry = dataclasses.replace(
                plan, released=plan.released[index], z=plan.z[index],
                source=None if plan.source is None else plan.source[index],
                x_start=resample_start(plan.x_start[index], self.retry_rho, gen))
            decoded = anonymizer.decode([retry], retry_progress,
                                        dataclasses.replace(anonymizer.sampling, guidance=guidance))
            for r, image in zip(rows, decoded[0]):
                pixels[r] = image
            tries[rows] += 1
            wrong[rows] = self._disagreeing(retry, [pixels[r] for r in rows], checked)
        names = anonymizer.model.attribute_names
        out: list[list[VerifiedCandidate]] = []
        for i, row in enumerate(anonymizer.receipts(plan, pixels)):
            verified = []
            for c, item in enumerate(row):
                r = i * plan.candidates + c
                bad = tuple(names[j] for j, w in zip(checked, wrong[r]) if w)
                receipt = dataclasses.replace(item.receipt, decode_tries=int(tries[r]))
                image = None if bad else dataclasses.replace(item, receipt=receipt)
                verified.append(VerifiedCandidate(image, int(tries[r]), bad, receipt))
            out.append(verified)
        return out

    def _checked(self, plan: ReleasePlan) -> list[int]:
        """Columns released by randomized response (a laplace value has no class to read)."""
        if plan.settings.mechanism is not Mechanism.RANDOMIZED_RESPONSE:
            return []
        names = self.anonymizer.model.attribute_names
        return [names.index(a) for a in plan.settings.attribute_epsilon]

    def _disagreeing(self, plan: ReleasePlan, pixels: list[np.ndarray], checked: list[int]) -> np.ndarray:
        """(rows, checked) True where the classifier's reading differs from the released value."""
        if not checked:
            return np.zeros((len(pixels), 0), dtype=bool)
        logits = self.anonymizer.read_attributes(pixels)[:, checked]
        return ((logits >= 0) != (plan.released[:, checked] > 0)).cpu().numpy()
