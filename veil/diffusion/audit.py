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

Tuning and test probes are disjoint sets of identities the model never saw, decoded with
different seeds; nothing measured on test decodes feeds a choice. Both are named in the output.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from veil.data import CelebA
from veil.diffusion.anonymize import Anonymizer, Prepared, to_tensor
from veil.diffusion.evaluate import EvalConfig, EvalNet, EvalReport, Row, evaluators, predict, train_network
from veil.diffusion.leakage import (Interval, PosteriorTable, bayes_ceiling, bootstrap_mean, detector_ceiling,
                                    expected_correct, paired_auc, wilson_interval)
from veil.diffusion.mechanisms import keep_probability
from veil.errors import InvalidArgument
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
    """Decodes of each probe (D draws x N probes) with the protected value kept and flipped."""

    kept: np.ndarray  # uint8 (D, N, H, W, 3)
    flipped: np.ndarray


def decode_outcomes(anonymizer: Anonymizer, prepared: Prepared, privacy: PrivacySettings, attribute: str,
                    seeds: Sequence[int]) -> Outcomes:
    j = anonymizer.model.attribute_names.index(attribute)
    value = prepared.predicted[:, j]
    kept, flipped = [], []
    for seed in seeds:
        plans = [anonymizer.plan(prepared, privacy, 1, seed, outcome={attribute: v}) for v in (value, -value)]
        pixels = anonymizer.decode(plans)
        kept.append(np.stack(pixels[0]))
        flipped.append(np.stack(pixels[1]))
    return Outcomes(np.stack(kept), np.stack(flipped))


def _reads_plus(net: EvalNet, images: np.ndarray, column: int | slice) -> np.ndarray:
    """The net's +1 verdicts on (D, N, ...) images: (D, N) for one column, (D, N, A) for a slice."""
    flat = images.reshape(-1, *images.shape[2:])
    logits = predict(net, flat, "logits")[:, column].numpy()
    return (logits > 0).reshape(images.shape[0], images.shape[1], *logits.shape[1:])


def fine_tune(clean: EvalNet, images: np.ndarray, labels: np.ndarray, weights: np.ndarray, epochs: int, batch: int,
              seed: int, head_from: int | None = None) -> EvalNet:
    """A one-output net started from the clean attacker's features (and its output `head_from`,
    so an attacker starts as the clean one), trained on weighted examples."""
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
    utility_drop: dict[str, float] = field(default_factory=dict)


class LeakageAudit:
    """The audit of one model against one attribute, on tuning and test probes of unseen identities."""

    def __init__(self, anonymizer: Anonymizer, clean: EvalNet, train: CelebA, unseen: CelebA, cfg: AuditConfig,
                 probe_seed: int = 0, log: Callable[[str], None] = print) -> None:
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
        self.table = PosteriorTable(train.attributes[:, self.key], train.attributes[:, self.unchanged])

    def run(self, report: EvalReport) -> dict[str, Any]:
        cfg = self.cfg
        self.log(f"audit: inverting {len(self.tuning)} tuning and {len(self.test)} test probes")
        prepared_tuning = self.anonymizer.prepare(list(self.tuning.images))
        prepared_test = self.anonymizer.prepare(list(self.test.images))
        labels = self.test.attributes
        original_acc = (_reads_plus(self.clean, self.test.images[None], slice(None))[0] == (labels > 0)).mean(axis=0)
        results: list[SettingResult] = []
        groups: dict[tuple[float | None, float], list[Setting]] = {}
        for setting in settings(cfg, self.names):
            groups.setdefault(setting.decoding, []).append(setting)
        for (identity_eps, rho), members in groups.items():
            self.log(f"audit: decoding kept/flipped outcomes (identity eps {identity_eps}, rho {rho}) "
                     f"for {', '.join(f'{s.name} eps={s.epsilon:g}' for s in members)}")
            privacy = members[0].privacy
            tuning = decode_outcomes(self.anonymizer, prepared_tuning, privacy, cfg.attribute, [cfg.tuning_seed])
            test = decode_outcomes(self.anonymizer, prepared_test, privacy, cfg.attribute, cfg.test_seeds)
            shared = self._outcome_measures(prepared_test, tuning, test)
            reads_kept = _reads_plus(self.clean, test.kept, slice(None))
            reads_flipped = _reads_plus(self.clean, test.flipped, slice(None))
            for setting in members:
                results.append(self._setting(setting, tuning, test, shared, reads_kept, reads_flipped, original_acc))
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

    def _probes_named(self, probes: CelebA, seeds: list[int], use: str) -> dict[str, Any]:
        ids = probes.identities
        return {"probes": len(probes), "source": str(probes.root), "probe_seed": self.probe_seed,
                "identities_sha": _digest(ids), "decode_seeds": seeds, "used_for": use}

    def _outcome_measures(self, prepared_test: Prepared, tuning: Outcomes, test: Outcomes) -> dict[str, Interval]:
        """What does not depend on eps: the detector and edit realisation."""
        cfg = self.cfg
        n = tuning.kept.shape[1]
        detector = fine_tune(self.clean, np.concatenate([tuning.kept[0], tuning.flipped[0]]),
                             np.concatenate([-np.ones(n), np.ones(n)]), np.ones(2 * n), cfg.attacker_epochs,
                             cfg.batch_size, cfg.seed)

        def score(images: np.ndarray) -> np.ndarray:  # per probe, averaged over the test draws
            logits = predict(detector, images.reshape(-1, *images.shape[2:]), "logits")[:, 0].numpy()
            return logits.reshape(images.shape[:2]).mean(axis=0)

        flipped_scores, kept_scores = score(test.flipped), score(test.kept)
        predicted = prepared_test.predicted[:, self.key].cpu().numpy()
        reads = _reads_plus(self.clean, test.flipped, self.key)  # (D, N)
        to_plus, to_minus = predicted < 0, predicted > 0
        return {
            "detector": paired_auc(flipped_scores, kept_scores, seed=cfg.seed),
            "detector_ceiling": detector_ceiling(self.table, self.test.attributes[:, self.key],
                                                 self.test.attributes[:, self.unchanged]),
            "to_plus": wilson_interval(int(reads[:, to_plus].sum()), int(to_plus.sum() * reads.shape[0])),
            "to_minus": wilson_interval(int((~reads[:, to_minus]).sum()), int(to_minus.sum() * reads.shape[0])),
        }

    def _setting(self, setting: Setting, tuning: Outcomes, test: Outcomes, shared: dict[str, Interval],
                 reads_kept: np.ndarray, reads_flipped: np.ndarray, original_acc: np.ndarray) -> SettingResult:
        cfg, key = self.cfg, self.key
        keep = keep_probability(setting.epsilon)
        truth = self.test.attributes > 0
        right_kept = (reads_kept == truth).mean(axis=0)  # (N, A), averaged over test draws
        right_flipped = (reads_flipped == truth).mean(axis=0)
        clean = bootstrap_mean(expected_correct(right_kept[:, key], right_flipped[:, key], keep), seed=cfg.seed)
        tuning_labels = self.tuning.attributes[:, key]
        adaptive_net = fine_tune(self.clean, np.concatenate([tuning.kept[0], tuning.flipped[0]]),
                                 np.concatenate([tuning_labels, tuning_labels]),
                                 np.concatenate([np.full(len(tuning_labels), keep), np.full(len(tuning_labels), 1 - keep)]),
                                 cfg.attacker_epochs, cfg.batch_size, cfg.seed, head_from=key)
        adaptive_kept = (_reads_plus(adaptive_net, test.kept, 0) == truth[:, key]).mean(axis=0)
        adaptive_flipped = (_reads_plus(adaptive_net, test.flipped, 0) == truth[:, key]).mean(axis=0)
        adaptive = bootstrap_mean(expected_correct(adaptive_kept, adaptive_flipped, keep), seed=cfg.seed)
        ceiling = bootstrap_mean(bayes_ceiling(self.table, self.test.attributes[:, key],
                                               self.test.attributes[:, self.unchanged], keep), seed=cfg.seed)
        expected_acc = keep * right_kept.mean(axis=0) + (1 - keep) * right_flipped.mean(axis=0)
        drops = {self.names[j]: float(original_acc[j] - expected_acc[j]) for j in self.unchanged}
        return SettingResult(setting.name, setting.epsilon, keep, clean, adaptive, ceiling, shared["detector"],
                             shared["detector_ceiling"], shared["to_plus"], shared["to_minus"], drops)

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


def _digest(ids: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:16]


def _result_dict(r: SettingResult) -> dict[str, Any]:
    out: dict[str, Any] = {"name": r.name, "epsilon": r.epsilon, "bound": r.bound, "utility_drop": r.utility_drop}
    for name in ("clean", "adaptive", "ceiling", "detector", "detector_ceiling", "realised_to_plus", "realised_to_minus"):
        out[name] = getattr(r, name).to_dict()
    return out


def audit_model(anonymizer: Anonymizer, data: CelebA, unseen: CelebA, eval_cfg: EvalConfig, cfg: AuditConfig,
                report: EvalReport, cache_dir: Any = None, log: Callable[[str], None] = print) -> None:
    """Run the audit and add its rows to `report` (details under "audit"); `veil eval`'s clean
    attacker (cached by `evaluate`) is the clean-trained attacker and the adaptive one's start."""
    started = time.monotonic()
    train = data.split("train")
    clean, _ = evaluators(train, eval_cfg, data.fingerprint(), cache_dir, log)
    details = LeakageAudit(anonymizer, clean, train, unseen, cfg, eval_cfg.probe_seed, log).run(report)
    details["seconds"] = time.monotonic() - started
    report.details["audit"] = details
