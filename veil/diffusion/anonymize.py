"""Anonymise face images: the Diffusion-DP release of DESIGN section 4 (variant A).

For each image: encode z_sem, predict the attributes a, invert to x_T with (z, a). For each of K
candidates: release every protected attribute through its mechanism (the release function of
its veil.privacy.mechanisms entry), re-draw the attributes
implied by a protected one from their distribution given the released value (post-processing),
release z_sem through the Gaussian mechanism when identity is protected, re-draw a fraction rho
of x_T, and decode with guidance towards the released attributes. Each output carries a
`Receipt` of what was spent; the original attribute values never leave this module.

Whether the decoded image itself is covered by the receipt's eps (identity mechanism, rho 1,
null guidance) is decided once, by veil.privacy.guarantee.image_level_guarantee, and recorded in
the plan and the receipt; a null-guided plan does not even hold the original attributes.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from veil.diffusion.mechanisms import GaussianCalibration, calibrate_identity, resample_start
from veil.diffusion.pipeline import DiffusionAutoencoder, SamplingConfig
from veil.diffusion.verify import EditVerifier, VerifiedCandidate
from veil.errors import InvalidArgument, quoted
from veil.ledger import AttributeSpend, IdentitySpend, ReleaseSpend
from veil.privacy import (IDENTITY_DELTA, IDENTITY_MECHANISM, MECHANISMS, PrivacySettings, require_attributes,
                          require_candidates, require_seed)
from veil.privacy.guarantee import SOURCE_GUIDANCE, image_level_guarantee

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class AttributeRelease:
    attribute: str
    mechanism: str
    epsilon: float
    released_value: float


@dataclass(frozen=True)
class Receipt:
    receipt_id: str
    attributes: tuple[AttributeRelease, ...]
    resampled: tuple[str, ...]  # implied attributes re-drawn from the released values (no budget)
    identity_epsilon: float | None
    identity_delta: float | None
    identity_sigma: float | None
    identity_noise_multiplier: float | None
    rho: float
    level: int
    seed: int
    candidate: int
    model_version: str
    input_sha256: str
    created_at: float = field(default_factory=time.time)
    decode_tries: int = 1  # decodes until the image read as the released values (veil.diffusion.verify)
    # veil.privacy.guarantee: the image, not only the released values, is bounded by these eps.
    image_level_guarantee: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def spend(self) -> ReleaseSpend | None:
        """What charging this release costs on the subject's ledger; None when it spends nothing."""
        identity = None
        if self.identity_epsilon is not None:
            identity = IdentitySpend(self.identity_epsilon, self.identity_delta, self.identity_noise_multiplier)
        if not self.attributes and identity is None:
            return None
        attrs = tuple(AttributeSpend(a.attribute, a.mechanism, a.epsilon) for a in self.attributes)
        return ReleaseSpend(self.receipt_id, attrs, identity)


@dataclass(frozen=True)
class Prepared:
    """The budget-independent part of anonymising a batch: latents, attribute logits, x_T."""

    z: torch.Tensor
    logits: torch.Tensor
    predicted: torch.Tensor
    x_start: torch.Tensor
    hashes: list[str]

    def __len__(self) -> int:
        return self.z.shape[0]

    def select(self, start: int, stop: int) -> Prepared:
        """The images start..stop-1 (a request's share of a micro-batch)."""
        return Prepared(self.z[start:stop], self.logits[start:stop], self.predicted[start:stop],
                        self.x_start[start:stop], self.hashes[start:stop])


@dataclass(frozen=True)
class ReleasePlan:
    """The mechanisms' output for K candidates of each image of one request, ready to decode."""

    settings: PrivacySettings
    candidates: int
    seed: int
    hashes: list[str]
    released: torch.Tensor  # (N*K, A) attributes fed to the decoder
    # (N*K, A) the ORIGINAL predicted attributes, only under "source" guidance (its base): a
    # null-guided plan holds nothing of the original but what its mechanisms released and, when
    # rho < 1, part of x_T.
    source: torch.Tensor | None
    z: torch.Tensor  # (N*K, d) released latents
    x_start: torch.Tensor  # (N*K, 3, H, W)
    calibration: GaussianCalibration | None
    implied: tuple[str, ...]
    image_level_guarantee: bool

    def __len__(self) -> int:
        return self.released.shape[0]


@dataclass(frozen=True)
class AnonymizedImage:
    image: np.ndarray  # uint8 (H, W, 3)
    receipt: Receipt


def to_tensor(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    for i, img in enumerate(images):
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.shape != (size, size, 3):
            shape = getattr(img, "shape", None)
            raise InvalidArgument(f"image {i}: expected uint8 RGB of {size}x{size}x3, got {shape}")
    stacked = np.stack(images).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return list(pixels)


class Anonymizer:
    """Diffusion-DP over one loaded model; thread-compatible, not thread-safe (one batch at a time)."""

    def __init__(self, model: DiffusionAutoencoder, sampling: SamplingConfig | None = None, max_batch: int = 32,
                 decode_tries: int = 0) -> None:
        """`decode_tries`: decodes per candidate until it reads as released (veil.diffusion.verify);
        0 offers every candidate as first decoded."""
        self.model = model
        self.sampling = sampling or model.card.sampling
        self.sampling.validate()
        if max_batch < 1:
            raise InvalidArgument(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        self.verifier = EditVerifier(self, decode_tries) if decode_tries else None

    @property
    def decode_tries(self) -> int:
        """The most decodes of a candidate until it reads as released; 0: unverified."""
        return 0 if self.verifier is None else self.verifier.max_tries

    @property
    def model_version(self) -> str:
        return self.model.card.model_version

    def _implied_rates(self, protect: Sequence[str]) -> dict[str, tuple[str, dict[str, dict[str, float]]]]:
        """implied attribute -> (the protected key it follows, that key's conditional rates)."""
        card = self.model.card
        out: dict[str, tuple[str, dict[str, dict[str, float]]]] = {}
        for key in protect:
            for other in card.implied.get(key, []):
                if other not in protect and other not in out:
                    out[other] = (key, card.conditional_rates[key])
        return out

    @torch.no_grad()
    def prepare(self, images: Sequence[np.ndarray], progress: ProgressFn | None = None) -> Prepared:
        """Encode, predict attributes and invert: everything that does not depend on the budget."""
        if not images:
            raise InvalidArgument("no images to anonymise")
        model = self.model
        x0 = to_tensor(images, model.image_size).to(model.device)
        z = model.encode(x0)
        logits = model.attribute_logits(x0)
        predicted = torch.where(logits >= 0, 1.0, -1.0)
        x_start = torch.cat([
            model.invert(x0[s:s + self.max_batch], model.condition(z[s:s + self.max_batch], predicted[s:s + self.max_batch]),
                         self.sampling, progress)
            for s in range(0, x0.shape[0], self.max_batch)
        ])
        hashes = [hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest() for img in images]
        return Prepared(z, logits, predicted, x_start, hashes)

    @torch.no_grad()
    def anonymize(self, images: Sequence[np.ndarray], settings: PrivacySettings, candidates: int = 1,
                  seed: int | None = None, progress: ProgressFn | None = None) -> list[list[AnonymizedImage]]:
        """K candidates for each image (uint8 RGB at the model's size)."""
        return self.release(self.prepare(images, progress), settings, candidates, seed, progress)

    @torch.no_grad()
    def release(self, prepared: Prepared, settings: PrivacySettings, candidates: int = 1, seed: int | None = None,
                progress: ProgressFn | None = None) -> list[list[AnonymizedImage]]:
        """K candidates for each prepared image under `settings`; with `decode_tries`, only the
        verified ones (`verified` says why the others are not)."""
        offers = self.verified(prepared, settings, candidates, seed, progress)
        return [[c.image for c in row if c.image is not None] for row in offers]

    @torch.no_grad()
    def verified(self, prepared: Prepared, settings: PrivacySettings, candidates: int = 1, seed: int | None = None,
                 progress: ProgressFn | None = None) -> list[list[VerifiedCandidate]]:
        """Every one of K candidates for each prepared image, offered or (with `decode_tries`)
        refused: [image][candidate]."""
        plan = self.plan(prepared, settings, candidates, seed)
        return self.offers(plan, self.decode([plan], progress)[0], progress)

    @torch.no_grad()
    def plan(self, prepared: Prepared, settings: PrivacySettings, candidates: int = 1,
             seed: int | None = None, outcome: dict[str, torch.Tensor] | None = None) -> ReleasePlan:
        """Run the mechanisms: the released attributes, latents and start points of every candidate.

        Plans of different requests (different settings) can be decoded together in one batch.
        `outcome` (per image, +-1) replaces the mechanism's released value of protected attributes
        after its draws, so every other draw is the same: the audit (veil.diffusion.audit) decodes
        each outcome of randomized response to weigh them by their probabilities. Never served.
        """
        require_candidates(candidates)
        names = self.model.attribute_names
        require_attributes(settings.attribute_epsilon, names)
        seed = require_seed(secrets.randbits(64) if seed is None else seed)
        gen = torch.Generator().manual_seed(seed)
        model, k = self.model, candidates
        device = model.device
        rows = torch.arange(len(prepared), device=device).repeat_interleave(k)
        released = prepared.predicted[rows].clone()
        values: dict[str, torch.Tensor] = {}
        spec = MECHANISMS[settings.mechanism]
        release = spec.release_function()
        for attr, eps in settings.attribute_epsilon.items():
            j = names.index(attr)
            released[:, j] = release(prepared.logits[rows, j], eps, spec, gen)
            values[attr] = released[:, j]
        for attr, value in (outcome or {}).items():
            if attr not in values:
                raise InvalidArgument(f"an outcome is given for {quoted(attr)}, which this setting does not release")
            released[:, names.index(attr)] = value.to(device)[rows]
            values[attr] = released[:, names.index(attr)]
        implied = self._implied_rates(list(values))
        for other, (key, rates) in implied.items():
            p_plus = torch.where(values[key] >= 0, rates["+1"][other], rates["-1"][other])
            draw = torch.rand(p_plus.shape, generator=gen).to(device)
            released[:, names.index(other)] = torch.where(draw < p_plus, 1.0, -1.0)
        z_rows, x_rows = prepared.z[rows], prepared.x_start[rows]
        calibration = None
        if settings.identity_epsilon is not None:
            calibration = calibrate_identity(settings.identity_epsilon, IDENTITY_DELTA, model.encoder.radius)
            release_identity = MECHANISMS[IDENTITY_MECHANISM].release_function()
            z_rows = release_identity(z_rows, calibration, model.encoder.radius, gen)
        x_rows = resample_start(x_rows, settings.rho, gen)
        base = self.sampling.guidance_base
        source = prepared.predicted[rows] if base == SOURCE_GUIDANCE else None
        return ReleasePlan(settings, k, seed, prepared.hashes, released, source, z_rows, x_rows,
                           calibration, tuple(implied), image_level_guarantee(settings, base))

    @torch.no_grad()
    def decode(self, plans: Sequence[ReleasePlan], progress: ProgressFn | None = None,
               sampling: SamplingConfig | None = None) -> list[list[np.ndarray]]:
        """Decode the rows of several plans in shared batches; pixels per plan, in row order.

        `sampling` may change the guidance weight (verified edits retry with stronger guidance),
        never its base: the plans were made for this anonymizer's.
        """
        model = self.model
        sampling = sampling or self.sampling
        if sampling.guidance_base != self.sampling.guidance_base:
            raise InvalidArgument("a plan decodes with the guidance base it was planned for")
        released = torch.cat([p.released for p in plans])
        sources = [p.source for p in plans if p.source is not None]
        source = torch.cat(sources) if self.sampling.guidance_base == SOURCE_GUIDANCE else None
        z_rows = torch.cat([p.z for p in plans])
        x_rows = torch.cat([p.x_start for p in plans])
        # A reconstruction is decoded without guidance, as it was inverted: its base is its own
        # condition, so the guided prediction is the conditional one. (With the null base, guidance
        # on a reconstruction cost the shipped model 9 dB of PSNR and most of its re-ID.)
        unguided = torch.cat([torch.full((len(p),), p.settings.reconstructs, dtype=torch.bool) for p in plans])
        unguided = unguided.to(released.device)[:, None]
        outputs: list[torch.Tensor] = []
        for s in range(0, released.shape[0], self.max_batch):
            sl = slice(s, s + self.max_batch)
            cond = model.condition(z_rows[sl], released[sl])
            if source is not None:
                base = model.condition(z_rows[sl], source[sl])
            else:
                base = model.condition(z_rows[sl], released[sl], null=True)
            base = torch.where(unguided[sl], cond, base)
            outputs.append(model.decode(x_rows[sl], cond, base, sampling, progress))
        pixels = to_uint8(torch.cat(outputs))
        out: list[list[np.ndarray]] = []
        start = 0
        for plan in plans:
            out.append(pixels[start:start + len(plan)])
            start += len(plan)
        return out

    @torch.no_grad()
    def read_attributes(self, pixels: Sequence[np.ndarray]) -> torch.Tensor:
        """The attribute classifier's logits (N, A) of decoded images."""
        return self.model.attribute_logits(to_tensor(pixels, self.model.image_size).to(self.model.device))

    @torch.no_grad()
    def offers(self, plan: ReleasePlan, pixels: Sequence[np.ndarray],
               progress: ProgressFn | None = None) -> list[list[VerifiedCandidate]]:
        """A decoded plan's candidates with their receipts, verified when `decode_tries` is set:
        [image][candidate]. Call it per plan after a batch decoded several plans together."""
        if self.verifier is not None:
            return self.verifier.verify(plan, pixels, progress)
        return [[VerifiedCandidate(item, 1, (), item.receipt) for item in row] for row in self.receipts(plan, pixels)]

    def receipts(self, plan: ReleasePlan, pixels: Sequence[np.ndarray]) -> list[list[AnonymizedImage]]:
        """Pair a plan's decoded pixels with their receipts: [image][candidate]."""
        names, settings, cal = self.model.attribute_names, plan.settings, plan.calibration
        shared = dict(
            resampled=plan.implied,
            identity_epsilon=settings.identity_epsilon,
            identity_delta=IDENTITY_DELTA if cal else None,
            identity_sigma=cal.sigma if cal else None,
            identity_noise_multiplier=cal.noise_multiplier if cal else None,
            rho=settings.rho, level=settings.level, seed=plan.seed, model_version=self.model_version,
            image_level_guarantee=plan.image_level_guarantee,
        )
        results: list[list[AnonymizedImage]] = []
        for i, digest in enumerate(plan.hashes):
            row: list[AnonymizedImage] = []
            for c in range(plan.candidates):
                r = i * plan.candidates + c
                attrs = tuple(AttributeRelease(a, settings.mechanism.value, eps, float(plan.released[r, names.index(a)]))
                              for a, eps in settings.attribute_epsilon.items())
                receipt = Receipt(receipt_id=uuid.uuid4().hex, attributes=attrs, candidate=c,
                                  input_sha256=digest, **shared)
                row.append(AnonymizedImage(pixels[r], receipt))
            results.append(row)
        return results
