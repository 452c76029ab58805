"""The leakage audit of `veil eval`: how much the released IMAGE gives away about a protected attribute.

For every setting (the attribute-only release at several eps, and every level of the table with the
attribute protected) each probe is decoded twice, with the protected value kept and flipped; all
other randomness is the same in both. Measured against the original labels:

* the clean-trained attacker (`veil eval`'s attribute classifier), expected over the mechanism;
* an adaptive attacker: the clean one fine-tuned on TUNING probes' released images with their
  original labels, each image weighted by its probability under the mechanism (the expectation
  of training on draws, without the draw noise); scored on TEST probes, expected likewise. Its
  bar (ceiling + margin) is judged on the stronger of it and the clean attacker;
* a kept-vs-flipped detector (AUC), trained on tuning decodes, beside the best AUC the released
  value and the unchanged attributes allow;
* the ceiling: the Bayes accuracy from the released value plus the attributes released unchanged;
* edit realisation per direction (the clean attacker reads the flipped value);
* the largest expected accuracy drop of a non-protected attribute;
* a fresh probe on z_sem itself (trained after the fact on training faces' z_sem).

With `decode_tries` the outcomes are verified as served (veil.diffusion.verify): one the model's
classifier does not read as released is decoded again, and one that never does is refused, not
released. Every figure is then over what is released: an outcome's weight is its probability
under the mechanism times whether it was offered, normalised per probe and draw (a draw with both
outcomes refused releases nothing and counts for nothing). The refusal rates are reported: when
refusing depends on the original (it can where the image is not a function of the released
values alone), the released value is no longer distributed as the mechanism says, and the clean
attacker's bar (nominal bound) is where that shows.

Tuning and test probes are disjoint sets of identities the model never saw, decoded with
different seeds; nothing measured on test decodes feeds a choice. Both are named in the output.

With a cache folder each decoding group's outcomes are kept as they are decoded (keyed by the
model's weights, the sampling, the probes, the seeds and the release), so a long audit (the full
size on a CPU takes hours) stopped part-way resumes from the last group decoded.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from veil.data import CelebA
from veil.diffusion.anonymize import Anonymizer, Prepared, to_tensor
from veil.diffusion.evaluate import EvalConfig, EvalNet, EvalReport, Row, evaluators, predict, train_network
from veil.diffusion.leakage import (Interval, PosteriorTable, bayes_ceiling, bootstrap_mean, detector_ceiling,
                                    paired_auc, wilson_interval)
from veil.diffusion.mechanisms import keep_probability
from veil.diffusion.verify import EditVerifier
from veil.errors import InvalidArgument
from veil.files import write_bytes_atomically
from veil.privacy import LEVELS, PrivacySettings

ATTRIBUTE_ONLY = "attribute-only"


@dataclass
class AuditConfig:
    attribute: str = "Male"
    tuning_probes: int = 200
    test_probes: int = 200
    epsilons: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # of the explicit releases below
    # Explicit releases of the attribute at `epsilons`: (identity eps or None, rho). (None, 0.0) is the
    # attribute-only release the API allows; others tell which part of the input carries a leak.
    releases: tuple[tuple[float | None, float], ...] = ((None, 0.0),)
    levels: tuple[int, ...] = tuple(p.level for p in LEVELS if p.attribute_epsilon is not None)
    tuning_seed: int = 1  # the tuning decodes' randomness
    test_seeds: tuple[int, ...] = (2,)  # one test draw per seed; per-probe results are averaged over them
    decode_tries: int = 0  # verified edits as served (VEIL_DECODE_TRIES); 0: every decode released
    attacker_epochs: int = 10
    batch_size: int = 64
    seed: int = 0  # attacker training and the bootstrap
    margin: float = 0.02  # the bars: attacker <= bound or ceiling + margin (upper end of the 95% interval)
    realisation_bar: float = 0.97
    utility_drop: float = 0.05
    zsem_train_images: int = 4000


@dataclass(frozen=True)
class Setting:
    name: str  # "attribute-only" or "level N"
    epsilon: float
    privacy: PrivacySettings

    @property
    def decoding(self) -> tuple[float | None, float]:
        """Settings that share it decode the same images (the eps only weighs the outcomes)."""
        return self.privacy.identity_epsilon, self.privacy.rho


def release_name(identity_epsilon: float | None, rho: float) -> str:
    if identity_epsilon is None and rho == 0.0:
        return ATTRIBUTE_ONLY
    identity = "" if identity_epsilon is None else f" identity eps {identity_epsilon:g}"
    return f"{ATTRIBUTE_ONLY}{identity} rho {rho:g}"


def settings(cfg: AuditConfig, names: Sequence[str]) -> list[Setting]:
    out = [Setting(release_name(identity_eps, rho), eps,
                   PrivacySettings.explicit([cfg.attribute], names, {cfg.attribute: eps}, identity_epsilon=identity_eps, rho=rho))
           for identity_eps, rho in cfg.releases for eps in cfg.epsilons]
    for level in cfg.levels:
        privacy = PrivacySettings.from_level(level, [cfg.attribute], names)
        if cfg.attribute not in privacy.attribute_epsilon:
            raise InvalidArgument(f"level {level} releases attributes unchanged; it has nothing to audit")
        out.append(Setting(f"level {level}", privacy.attribute_epsilon[cfg.attribute], privacy))
    return out


def split_probes(unseen: CelebA, tuning: int, test: int, seed: int) -> tuple[CelebA, CelebA]:
    """One image per identity; the first `tuning` identities (in a seeded order) tune, the next `test` test."""
    ids = np.unique(unseen.identities)
    if len(ids) < tuning + test:
        raise InvalidArgument(f"the audit needs {tuning + test} unseen identities, the data has {len(ids)}")
    order = np.random.default_rng(seed).permutation(ids)
    first = {int(i): int(np.flatnonzero(unseen.identities == i)[0]) for i in order[:tuning + test]}

    def pick(chosen: np.ndarray) -> CelebA:
        return unseen.subset(np.array([first[int(i)] for i in chosen]))

    return pick(order[:tuning]), pick(order[tuning:tuning + test])


@dataclass(frozen=True)
class Outcomes:
    """Decodes of each probe (D draws x N probes) with the protected value kept and flipped, and
    whether each was offered (always, unverified; a refused one's pixels are its first decode)."""

    kept: np.ndarray  # uint8 (D, N, H, W, 3)
    flipped: np.ndarray
    kept_offered: np.ndarray  # bool (D, N)
    flipped_offered: np.ndarray

    def weights(self, keep: float) -> tuple[np.ndarray, np.ndarray]:
        """(D, N) probabilities of releasing the kept and the flipped decode, given a release."""
        kept = keep * self.kept_offered
        flipped = (1 - keep) * self.flipped_offered
        total = kept + flipped
        scale = np.divide(1.0, total, out=np.zeros_like(total, dtype=np.float64), where=total > 0)
        return kept * scale, flipped * scale


def decode_outcomes(anonymizer: Anonymizer, prepared: Prepared, privacy: PrivacySettings, attribute: str,
                    seeds: Sequence[int], verifier: EditVerifier | None = None) -> Outcomes:
    j = anonymizer.model.attribute_names.index(attribute)
    value = prepared.predicted[:, j]
    pixels: dict[str, list[np.ndarray]] = {"kept": [], "flipped": []}
    offered: dict[str, list[np.ndarray]] = {"kept": [], "flipped": []}
    for seed in seeds:
        plans = [anonymizer.plan(prepared, privacy, 1, seed, outcome={attribute: v}) for v in (value, -value)]
        for name, plan, decoded in zip(("kept", "flipped"), plans, anonymizer.decode(plans)):
            if verifier is None:
                pixels[name].append(np.stack(decoded))
                offered[name].append(np.ones(len(decoded), dtype=bool))
                continue
            verified = [row[0] for row in verifier.verify(plan, decoded)]
            final = [c.image.image if c.offered else first for c, first in zip(verified, decoded)]
            pixels[name].append(np.stack(final))
            offered[name].append(np.array([c.offered for c in verified]))
    return Outcomes(np.stack(pixels["kept"]), np.stack(pixels["flipped"]), np.stack(offered["kept"]),
                    np.stack(offered["flipped"]))


def expected_over_releases(right_kept: np.ndarray, right_flipped: np.ndarray, weights: tuple[np.ndarray, np.ndarray]
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Per probe (averaged over the draws that released something): the expected rightness of
    (D, N[, A]) verdicts under (D, N) release weights; and which probes released anything."""
    w_kept, w_flipped = weights
    released = (w_kept + w_flipped) > 0  # (D, N)
    if right_kept.ndim == 3:
        w_kept, w_flipped, mask = w_kept[..., None], w_flipped[..., None], released[..., None]
    else:
        mask = released
    per_draw = w_kept * right_kept + w_flipped * right_flipped
    draws = mask.sum(axis=0)
    any_release = released.any(axis=0)
    mean = np.divide((per_draw * mask).sum(axis=0), draws, out=np.zeros(per_draw.shape[1:]), where=draws > 0)
    return mean[any_release], any_release


def _reads_plus(net: EvalNet, images: np.ndarray, column: int | slice) -> np.ndarray:
    """The net's +1 verdicts on (D, N, ...) images: (D, N) for one column, (D, N, A) for a slice."""
    flat = images.reshape(-1, *images.shape[2:])
    logits = predict(net, flat, "logits")[:, column].numpy()
    return (logits > 0).reshape(images.shape[0], images.shape[1], *logits.shape[1:])


def fine_tune(clean: EvalNet, images: np.ndarray, labels: np.ndarray, weights: np.ndarray, epochs: int, batch: int,
              seed: int, head_from: int | None = None) -> EvalNet:
    """A one-output net started from the clean attacker's features (and its output `head_from`,
    so an attacker starts as the clean one), trained on weighted examples."""
    torch.manual_seed(seed)  # the new head's initialisation: the same whatever ran before
    net = EvalNet(1, image_size=images.shape[1])
    state = {k: v for k, v in clean.state_dict().items() if not k.startswith("head.")}
    if head_from is not None:
        state["head.weight"] = clean.head.weight[head_from:head_from + 1].detach().clone()
        state["head.bias"] = clean.head.bias[head_from:head_from + 1].detach().clone()
    net.load_state_dict(state, strict=False)
    targets = torch.from_numpy(np.stack([labels > 0, weights], axis=1).astype(np.float32))

    def weighted_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], target[:, 0], reduction="none")
        return (loss * target[:, 1]).sum() / target[:, 1].sum().clamp_min(1e-12)

    return train_network(net, images, targets, weighted_bce, epochs, batch, seed)


@dataclass
class SettingResult:
    name: str
    epsilon: float
    bound: float
    clean: Interval
    adaptive: Interval
    ceiling: Interval
    detector: Interval
    detector_ceiling: Interval
    realised_to_plus: Interval  # e.g. woman -> man
    realised_to_minus: Interval
    utility_drop: dict[str, float]
    # Verified edits: the share of outcomes refused, kept and flipped per direction (0 unverified).
    refused_kept: Interval
    refused_to_plus: Interval
    refused_to_minus: Interval
    released_probes: int  # test probes with a release in some draw (all, unverified)


class LeakageAudit:
    """The audit of one model against one attribute, on tuning and test probes of unseen identities."""

    def __init__(self, anonymizer: Anonymizer, clean: EvalNet, train: CelebA, unseen: CelebA, cfg: AuditConfig,
                 probe_seed: int = 0, log: Callable[[str], None] = print, cache_dir: Path | None = None) -> None:
        if cfg.tuning_seed in cfg.test_seeds:
            raise InvalidArgument("tuning and test decodes must use different seeds")
        names = anonymizer.model.attribute_names
        if cfg.attribute not in names:
            raise InvalidArgument(f"unknown attribute {cfg.attribute!r}; this model knows {', '.join(names)}")
        self.anonymizer, self.clean, self.cfg, self.log = anonymizer, clean, cfg, log
        self.names = names
        self.key = names.index(cfg.attribute)
        self.group = [cfg.attribute, *anonymizer.model.card.implied.get(cfg.attribute, [])]
        self.unchanged = [i for i, a in enumerate(names) if a not in self.group]
        self.tuning, self.test = split_probes(unseen, cfg.tuning_probes, cfg.test_probes, probe_seed)
        self.probe_seed = probe_seed
        self.train = train
        self.verifier = EditVerifier(anonymizer, cfg.decode_tries) if cfg.decode_tries else None
        self.cache_dir = cache_dir
        self._weights = _weights_digest(anonymizer) if cache_dir is not None else ""
        self.table = PosteriorTable(train.attributes[:, self.key], train.attributes[:, self.unchanged])

    def run(self, report: EvalReport) -> dict[str, Any]:
        cfg = self.cfg
        self.log(f"audit: inverting {len(self.tuning)} tuning and {len(self.test)} test probes")
        prepared_tuning = self.anonymizer.prepare(list(self.tuning.images))
        prepared_test = self.anonymizer.prepare(list(self.test.images))
        labels = self.test.attributes
        original_right = _reads_plus(self.clean, self.test.images[None], slice(None))[0] == (labels > 0)  # (N, A)
        results: list[SettingResult] = []
        groups: dict[tuple[float | None, float], list[Setting]] = {}
        for setting in settings(cfg, self.names):
            groups.setdefault(setting.decoding, []).append(setting)
        for (identity_eps, rho), members in groups.items():
            self.log(f"audit: decoding kept/flipped outcomes (identity eps {identity_eps}, rho {rho}) "
                     f"for {', '.join(f'{s.name} eps={s.epsilon:g}' for s in members)}")
            privacy = members[0].privacy
            tuning = self._outcomes(self.tuning, prepared_tuning, privacy, [cfg.tuning_seed])
            test = self._outcomes(self.test, prepared_test, privacy, list(cfg.test_seeds))
            shared = self._outcome_measures(prepared_test, tuning, test)
            reads_kept = _reads_plus(self.clean, test.kept, slice(None))
            reads_flipped = _reads_plus(self.clean, test.flipped, slice(None))
            for setting in members:
                results.append(self._setting(setting, tuning, test, shared, reads_kept, reads_flipped, original_right))
        for r in results:
            self._rows(report, r)
        zsem = self.zsem_probe()
        report.add(f"audit z_sem fresh probe {cfg.attribute} acc", zsem.value,
                   note=f"95% {zsem.low:.3f}-{zsem.high:.3f}; majority class {self._majority():.3f}")
        return {
            "attribute": cfg.attribute,
            "protected_group": self.group,
            "unchanged": [self.names[i] for i in self.unchanged],
            "config": asdict(self.cfg),
            "tuning": self._probes_named(self.tuning, [cfg.tuning_seed],
                                         "adaptive attacker and kept-vs-flipped detector training"),
            "test": self._probes_named(self.test, list(cfg.test_seeds), "every reported measurement"),
            "ceiling_statistics": f"P({cfg.attribute} | unchanged attributes) on {len(self.train)} training labels",
            "zsem_probe": zsem.to_dict(),
            "settings": [_result_dict(r) for r in results],
        }

    def _outcomes(self, probes: CelebA, prepared: Prepared, privacy: PrivacySettings, seeds: list[int]) -> Outcomes:
        """decode_outcomes, read from / kept in the cache folder when there is one."""
        if self.cache_dir is None:
            return decode_outcomes(self.anonymizer, prepared, privacy, self.cfg.attribute, seeds, self.verifier)
        key = hashlib.sha256(json.dumps([
            OUTCOMES_VERSION, self._weights, asdict(self.anonymizer.sampling), _digest(probes.identities),
            hashlib.sha256(probes.images.tobytes()).hexdigest(), seeds, self.cfg.attribute, self.cfg.decode_tries,
            privacy.to_json()], sort_keys=True, default=str).encode()).hexdigest()[:20]
        path = Path(self.cache_dir) / f"audit-outcomes-{key}.npz"
        if path.is_file():
            with np.load(path) as stored:
                self.log(f"audit: outcomes read from {path}")
                return Outcomes(stored["kept"], stored["flipped"], stored["kept_offered"], stored["flipped_offered"])
        outcomes = decode_outcomes(self.anonymizer, prepared, privacy, self.cfg.attribute, seeds, self.verifier)
        buffer = io.BytesIO()
        np.savez(buffer, **asdict(outcomes))
        write_bytes_atomically(path, buffer.getvalue())
        return outcomes

    def _probes_named(self, probes: CelebA, seeds: list[int], use: str) -> dict[str, Any]:
        ids = probes.identities
        return {"probes": len(probes), "source": str(probes.root), "probe_seed": self.probe_seed,
                "identities_sha": _digest(ids), "decode_seeds": seeds, "used_for": use}

    def _outcome_measures(self, prepared_test: Prepared, tuning: Outcomes, test: Outcomes) -> dict[str, Interval]:
        """What does not depend on eps: the detector, edit realisation and (verified) refusals."""
        cfg = self.cfg
        n = tuning.kept.shape[1]
        detector = fine_tune(self.clean, np.concatenate([tuning.kept[0], tuning.flipped[0]]),
                             np.concatenate([-np.ones(n), np.ones(n)]),
                             np.concatenate([tuning.kept_offered[0], tuning.flipped_offered[0]]).astype(np.float64),
                             cfg.attacker_epochs, cfg.batch_size, cfg.seed)

        def score(images: np.ndarray, offered: np.ndarray) -> np.ndarray:  # per probe, over its offered draws
            logits = predict(detector, images.reshape(-1, *images.shape[2:]), "logits")[:, 0].numpy()
            logits = logits.reshape(images.shape[:2])
            return np.divide((logits * offered).sum(axis=0), offered.sum(axis=0),
                             out=np.full(offered.shape[1], np.nan), where=offered.any(axis=0))

        flipped_scores, kept_scores = score(test.flipped, test.flipped_offered), score(test.kept, test.kept_offered)
        paired = ~np.isnan(flipped_scores) & ~np.isnan(kept_scores)
        predicted = prepared_test.predicted[:, self.key].cpu().numpy()
        reads = _reads_plus(self.clean, test.flipped, self.key)  # (D, N)
        offered = test.flipped_offered
        to_plus, to_minus = predicted < 0, predicted > 0

        def refused(mask: np.ndarray, probes: np.ndarray) -> Interval:
            return wilson_interval(int((~mask[:, probes]).sum()), int(mask[:, probes].size))

        return {
            "detector": paired_auc(flipped_scores[paired], kept_scores[paired], seed=cfg.seed),
            "detector_ceiling": detector_ceiling(self.table, self.test.attributes[:, self.key],
                                                 self.test.attributes[:, self.unchanged]),
            "to_plus": wilson_interval(int((reads & offered)[:, to_plus].sum()), int(offered[:, to_plus].sum())),
            "to_minus": wilson_interval(int((~reads & offered)[:, to_minus].sum()), int(offered[:, to_minus].sum())),
            "refused_kept": refused(test.kept_offered, np.ones_like(to_plus)),
            "refused_to_plus": refused(offered, to_plus),
            "refused_to_minus": refused(offered, to_minus),
        }

    def _setting(self, setting: Setting, tuning: Outcomes, test: Outcomes, shared: dict[str, Interval],
                 reads_kept: np.ndarray, reads_flipped: np.ndarray, original_right: np.ndarray) -> SettingResult:
        cfg, key = self.cfg, self.key
        keep = keep_probability(setting.epsilon)
        weights = test.weights(keep)
        truth = self.test.attributes > 0
        right_kept, right_flipped = reads_kept == truth, reads_flipped == truth  # (D, N, A)
        expected_right, released = expected_over_releases(right_kept, right_flipped, weights)  # (N', A)
        clean_right = expected_right[:, key]
        clean = bootstrap_mean(clean_right, seed=cfg.seed)
        tuning_labels = self.tuning.attributes[:, key]
        tuning_kept, tuning_flipped = tuning.weights(keep)
        adaptive_net = fine_tune(self.clean, np.concatenate([tuning.kept[0], tuning.flipped[0]]),
                                 np.concatenate([tuning_labels, tuning_labels]),
                                 np.concatenate([tuning_kept[0], tuning_flipped[0]]),
                                 cfg.attacker_epochs, cfg.batch_size, cfg.seed, head_from=key)
        adaptive_right, _ = expected_over_releases(_reads_plus(adaptive_net, test.kept, 0) == truth[:, key],
                                                   _reads_plus(adaptive_net, test.flipped, 0) == truth[:, key], weights)
        adaptive = bootstrap_mean(adaptive_right, seed=cfg.seed)
        ceiling = bootstrap_mean(bayes_ceiling(self.table, self.test.attributes[:, key],
                                               self.test.attributes[:, self.unchanged], keep), seed=cfg.seed)
        expected_acc = expected_right.mean(axis=0)
        original_acc = original_right[released].mean(axis=0)
        drops = {self.names[j]: float(original_acc[j] - expected_acc[j]) for j in self.unchanged}
        return SettingResult(setting.name, setting.epsilon, keep, clean, adaptive, ceiling, shared["detector"],
                             shared["detector_ceiling"], shared["to_plus"], shared["to_minus"], drops,
                             shared["refused_kept"], shared["refused_to_plus"], shared["refused_to_minus"],
                             int(released.sum()))

    def _rows(self, report: EvalReport, r: SettingResult) -> None:
        cfg, attr = self.cfg, self.cfg.attribute
        head = f"audit {r.name} eps={r.epsilon:g}"
        report.rows.append(upper_bar_row(f"{head} clean attacker {attr}", r.clean, r.bound + cfg.margin,
                                      f"bound {r.bound:.3f}"))
        # Reading the released value alone scores the bound on every probe, so the ceiling is at least
        # that. The bar holds the stronger attacker to it: a weakly trained adaptive one hides nothing.
        stronger = max(r.adaptive, r.clean, key=lambda i: i.high)
        report.rows.append(upper_bar_row(f"{head} adaptive attacker {attr}", r.adaptive,
                                      max(r.ceiling.value, r.bound) + cfg.margin,
                                      f"ceiling {r.ceiling}; judged on the stronger of adaptive and clean "
                                      f"(hi {stronger.high:.3f})", judged=stronger))
        report.add(f"{head} ceiling {attr}", r.ceiling.value, note=f"95% {r.ceiling.low:.3f}-{r.ceiling.high:.3f}")
        report.add(f"{head} kept-vs-flipped AUC", r.detector.value,
                   note=f"95% {r.detector.low:.3f}-{r.detector.high:.3f}; best from released values {r.detector_ceiling.value:.3f}")
        for direction, value in (("-1 -> +1", r.realised_to_plus), ("+1 -> -1", r.realised_to_minus)):
            report.add(f"{head} edit realised {attr} {direction}", value.value, ">=", cfg.realisation_bar,
                       f"95% {value.low:.3f}-{value.high:.3f}")
        worst = max(r.utility_drop, key=r.utility_drop.get)
        report.add(f"{head} largest utility drop", r.utility_drop[worst], "<=", cfg.utility_drop, worst)
        if cfg.decode_tries:
            for outcome, value in (("kept", r.refused_kept), (f"flipped {attr} -1 -> +1", r.refused_to_plus),
                                   (f"flipped {attr} +1 -> -1", r.refused_to_minus)):
                report.add(f"{head} refused {outcome}", value.value,
                           note=f"95% {value.low:.3f}-{value.high:.3f}; after {cfg.decode_tries} decodes")

    def zsem_probe(self) -> Interval:
        """A linear probe trained after the fact on training faces' z_sem; its accuracy on the test probes'."""
        model = self.anonymizer.model
        rng = np.random.default_rng(self.cfg.seed)
        idx = rng.choice(len(self.train), min(self.cfg.zsem_train_images, len(self.train)), replace=False)

        def encode(images: np.ndarray) -> torch.Tensor:
            return torch.cat([model.encode(to_tensor(list(images[s:s + 256]), model.image_size).to(model.device)).cpu()
                              for s in range(0, len(images), 256)])

        z_train, z_test = encode(self.train.images[idx]), encode(self.test.images)
        y = torch.from_numpy((self.train.attributes[idx, self.key] > 0).astype(np.float32))
        probe = torch.nn.Linear(z_train.shape[1], 1)
        mean, std = z_train.mean(0), z_train.std(0).clamp_min(1e-6)
        opt = torch.optim.LBFGS(probe.parameters(), max_iter=200)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(probe((z_train - mean) / std)[:, 0], y)
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        with torch.no_grad():
            right = (probe((z_test - mean) / std)[:, 0] > 0).numpy() == (self.test.attributes[:, self.key] > 0)
        return wilson_interval(int(right.sum()), len(right))

    def _majority(self) -> float:
        share = float((self.test.attributes[:, self.key] > 0).mean())
        return max(share, 1 - share)


def upper_bar_row(name: str, value: Interval, threshold: float, note: str, judged: Interval | None = None) -> Row:
    """A bar judged on the upper end of the 95% interval (of `judged`, by default the value's own)."""
    passed = (judged or value).high <= threshold + 1e-12
    return Row(name, value.value, f"hi <= {threshold:.3f}", passed, f"95% {value.low:.3f}-{value.high:.3f}; {note}")


OUTCOMES_VERSION = "audit-outcomes-1"


def _weights_digest(anonymizer: Anonymizer) -> str:
    """The loaded model's weights (a card's version need not change with them)."""
    digest = hashlib.sha256()
    for name, net in sorted(anonymizer.model.networks().items()):
        for key, tensor in sorted(net.state_dict().items()):
            digest.update(f"{name}.{key}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _digest(ids: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:16]


def _result_dict(r: SettingResult) -> dict[str, Any]:
    out: dict[str, Any] = {"name": r.name, "epsilon": r.epsilon, "bound": r.bound, "utility_drop": r.utility_drop}
    for name in ("clean", "adaptive", "ceiling", "detector", "detector_ceiling", "realised_to_plus",
                 "realised_to_minus", "refused_kept", "refused_to_plus", "refused_to_minus"):
        out[name] = getattr(r, name).to_dict()
    out["released_probes"] = r.released_probes
    return out


def audit_model(anonymizer: Anonymizer, data: CelebA, unseen: CelebA, eval_cfg: EvalConfig, cfg: AuditConfig,
                report: EvalReport, cache_dir: Any = None, log: Callable[[str], None] = print) -> None:
    """Run the audit and add its rows to `report` (details under "audit"); `veil eval`'s clean
    attacker (cached by `evaluate`) is the clean-trained attacker and the adaptive one's start."""
    started = time.monotonic()
    train = data.split("train")
    clean, _ = evaluators(train, eval_cfg, data.fingerprint(), cache_dir, log)
    details = LeakageAudit(anonymizer, clean, train, unseen, cfg, eval_cfg.probe_seed, log,
                           None if cache_dir is None else Path(cache_dir)).run(report)
    details["seconds"] = time.monotonic() - started
    report.details["audit"] = details
