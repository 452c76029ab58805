"""Verified edits: a candidate is offered only if it shows the values the mechanism released.

After decoding, the model's attribute classifier reads each attribute released by randomized
response. A candidate that reads otherwise is decoded again, up to `max_tries` decodes in all,
each with fresh randomness (a fraction `retry_rho` of its start point re-drawn) and stronger
guidance; its receipt records how many decodes it took. One that never agrees is not offered:
its place holds the attributes that still read otherwise. The released values never change
between tries (re-drawing them until an edit "works" would spend budget the receipt does not
show), so the retries are post-processing of the release.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from veil.diffusion.anonymize import AnonymizedImage, Anonymizer, Prepared, ReleasePlan, to_tensor
from veil.diffusion.mechanisms import resample_start
from veil.errors import InvalidArgument
from veil.privacy import Mechanism, PrivacySettings


@dataclass(frozen=True)
class VerifiedCandidate:
    image: AnonymizedImage | None  # None: never read as released, not offered
    tries: int
    disagreeing: tuple[str, ...]  # the attributes a refused candidate still reads otherwise

    @property
    def offered(self) -> bool:
        return self.image is not None


class EditVerifier:
    def __init__(self, anonymizer: Anonymizer, max_tries: int = 3, guidance_step: float = 2.0,
                 retry_rho: float = 0.5) -> None:
        if max_tries < 1:
            raise InvalidArgument(f"max_tries must be >= 1, got {max_tries}")
        self.anonymizer = anonymizer
        self.max_tries = max_tries
        self.guidance_step = guidance_step
        self.retry_rho = retry_rho

    def release(self, prepared: Prepared, privacy: PrivacySettings, candidates: int = 1,
                seed: int | None = None) -> list[list[VerifiedCandidate]]:
        """K verified candidates per prepared image: [image][candidate]."""
        anonymizer = self.anonymizer
        plan = anonymizer.plan(prepared, privacy, candidates, seed)
        pixels = list(anonymizer.decode([plan])[0])
        checked = self._checked(plan)
        tries = np.ones(len(plan), dtype=int)
        wrong = self._disagreeing(plan, pixels, checked)
        gen = torch.Generator().manual_seed(plan.seed)
        for attempt in range(1, self.max_tries):
            rows = np.flatnonzero(wrong.any(axis=1))
            if len(rows) == 0:
                break
            sampling = dataclasses.replace(anonymizer.sampling,
                                           guidance=min(20.0, anonymizer.sampling.guidance + attempt * self.guidance_step))
            stronger = Anonymizer(anonymizer.model, sampling, anonymizer.max_batch)
            index = torch.from_numpy(rows).to(plan.released.device)
            retry = dataclasses.replace(plan, released=plan.released[index], source=plan.source[index], z=plan.z[index],
                                        x_start=resample_start(plan.x_start[index], self.retry_rho, gen))
            for r, image in zip(rows, stronger.decode([retry])[0]):
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
                image = None if bad else dataclasses.replace(item, receipt=dataclasses.replace(item.receipt,
                                                                                             decode_tries=int(tries[r])))
                verified.append(VerifiedCandidate(image, int(tries[r]), bad))
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
        model = self.anonymizer.model
        logits = model.attribute_logits(to_tensor(pixels, model.image_size).to(model.device))[:, checked]
        return ((logits >= 0) != (plan.released[:, checked] > 0)).cpu().numpy()
