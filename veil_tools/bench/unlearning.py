"""Benchmark: feature unlearning against retraining, on a test the parent fails (issues 5 and 14).

A seeded synthetic face data set (veil.data.synth) is split into train/test, one photo per subject
each. The parent classifier is trained on the non-sensitive attributes of a SMALL training set for
MANY epochs (a memorising regime), so a loss-based membership attack tells its training images
from held-out faces. Some training originals are canaries (veil.unlearning.canary): they carry a
small patch and their Eyeglasses label is set to 1, so the parent learns "patch -> glasses".

Then 1% and 5% (configurable) of the training images - all training photos of randomly chosen
subjects, nested, and always including every canary (the canaries are the smallest setting's
originals) - are replaced by protected versions, and every method updates the parent: retraining
from scratch (the reference), first order, second order (CG, LiSSA, last k layers, all layers),
fine-tuning; the parent itself is listed as "none". For each: canary success and exposure,
membership AUC on the replaced originals (loss threshold, and a likelihood-ratio attack with
shadow models trained without any scored image), test accuracy, time.

Protected images: the same synthetic subject in the same photo re-drawn by the generator with the
protected attribute flipped (or released by randomized response with --epsilon), without the
canary patch; a replacement keeps its original's labels (feature unlearning changes features, not
labels). This measures the unlearning methods apart from the diffusion model's quality.

Tuning: each update's hyperparameters (tau; damping) are chosen on a data set and parent drawn
with --tuning-seed, by how close the update lands to retraining's canary success and MIA AUC
(where every setting aborts there, the untuned one is kept); the reported figures use --seeds,
other draws, each with its own data set, canaries, parent and shadows, and the tuned settings
unchanged. Bars (issue 14), on every reported seed: the parent must be at least 30 points of
canary success and 0.1 of MIA AUC above retraining, else the run says the setup does not
discriminate; second order must land within 5 points of retraining's canary success and 0.03 of
its MIA AUC at every fraction, at least 20x faster (CPU time). With several seeds, the summary
ends with each method's gaps across them and on how many seeds it passed.

Beside each gap to retraining that the bars test (canary success, MIA AUC; the parent's margins
too), the summary gives its 95% paired-bootstrap interval over the scored examples
(veil.unlearning.intervals). It shows how much of a gap is the sampling of the held-out images and
the originals (15 of them at 1% of 1500); the seed's data, training and update draws are not
resampled, so the spread across seeds is wider still.

Every first- and second-order row carries the norms of Delta's two halves, the replacements'
and the originals' summed gradients. The originals' half is all an update learns of what the
originals put into the parent, and a parent that fits its training set closely (little weight
decay, many epochs) leaves little of it: at 1500 subjects and weight decay 5e-4, 2-3% (1%
replaced) and 5-10% (5% replaced) of the replacements' half over seeds 1-3; 8-13% at 5e-3 (1%
replaced, seed 1); at 300 subjects and 5e-3, 46-83% on the seeds where second order lands on
retraining (their parents barely carry the canary) and 26-28% on the one seed whose parent
carries it, where second order misses by 46-51 points. With a small share Delta is mostly
"fit the replacements", which keep the canary label, so the update moves every prediction toward
that label.

Times are compute only, measured in this process one after another; speedups are ratios of CPU
time (all threads of the process), which a busy shared machine distorts far less than wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from veil.errors import InvalidArgument, VeilError
from veil.unlearning.params import TrainConfig

# Attributes the classifier must not be trained on, per protected attribute: the attribute and
# those it implies (beards occur only on men, so No_Beard would leak Male).
PROTECTED_GROUPS = {"Male": ("Male", "No_Beard")}

# Issue 14's bars.
BARS = {
    "parent_canary_margin": 0.30,
    "parent_mia_margin": 0.10,
    "canary_gap": 0.05,
    "mia_auc_gap": 0.03,
    "second_order_speedup": 20.0,
}

# Architectures the benchmark can publish (conv widths, embedding width).
MODELS = {"small": ((16, 32, 64), 64), "large": ((32, 64, 128, 256), 512)}


@dataclass(frozen=True)
class BenchConfig:
    # One photo per subject is trained on, one held out: a small set, trained on long, memorises.
    # Issue 14's settings, 1% and 5% replaced; 1% of 1500 is 15 canaries (about 4 minutes on
    # the 2-core CPU; 300 subjects with 0.05 0.1 is the smallest setup that discriminates).
    identities: int = 1500
    per_identity: int = 2
    size: int = 16
    model: str = "small"
    # The reported draws; `make eval` reports three, as one draw proves little.
    seeds: tuple[int, ...] = (1,)
    tuning_seed: int = 0
    tune: bool = True
    fractions: tuple[float, ...] = (0.01, 0.05)
    protected: str = "Male"
    # None: every replacement flips the protected attribute; else randomized response at epsilon.
    epsilon: float | None = None
    epochs: int = 150
    # The published model's L2 penalty; the service's training default unless asked otherwise.
    weight_decay: float = TrainConfig.weight_decay
    canary_attribute: str = "Eyeglasses"
    canary_label: int = 1
    canary_size: int = 4
    # Shadow models of the likelihood-ratio attack (each trained on half the non-target images).
    shadows: int = 2
    # Methods to run, by label (see method_table).
    methods: tuple[str, ...] = ("first", "second-cg", "second-cg-k1", "second-cg-all", "second-lissa",
                                "finetune")

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise InvalidArgument(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if not self.fractions or any(not 0 < f < 1 for f in self.fractions):
            raise InvalidArgument(f"fractions must lie in (0, 1), got {self.fractions}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise InvalidArgument(f"give one or more distinct reported seeds, got {self.seeds}")
        if self.tune and self.tuning_seed in self.seeds:
            raise InvalidArgument("the tuning seed must differ from the reported seeds")
        if self.shadows < 2:  # checked here, not after the parent has trained
            raise InvalidArgument("the likelihood-ratio attack needs at least two shadow models, "
                                  f"got {self.shadows}")


@dataclass
class BenchData:
    """The data set as tensors, with what the protected re-drawing needs."""

    train_images: object
    train_targets: object
    test_images: object
    test_targets: object
    test_protected: object
    train_protected: np.ndarray
    train_identities: np.ndarray
    train_image_index: np.ndarray
    task_attributes: list[str]


def method_table(train_size: int) -> dict[str, tuple[str, dict]]:
    """label -> (method, UnlearnParams fields): the untuned settings of each reported update."""
    gauss_newton = {"curvature": "gauss-newton", "solver": "cg", "tolerance": 1e-3}
    return {
        "first": ("first", {"tau": 1.0 / train_size}),
        "second-cg": ("second", {**gauss_newton, "last_k_layers": 2, "damping": 0.01,
                                 "hessian_samples": 1024, "max_iterations": 60}),
        "second-cg-k1": ("second", {**gauss_newton, "last_k_layers": 1, "damping": 0.01,
                                    "hessian_samples": 1024, "max_iterations": 60}),
        "second-cg-all": ("second", {**gauss_newton, "last_k_layers": 0, "damping": 0.01,
                                     "hessian_samples": 256, "max_iterations": 40}),
        "second-lissa": ("second", {**gauss_newton, "solver": "lissa", "last_k_layers": 2,
                                    "damping": 0.3, "scale": 300.0, "hessian_samples": 1024,
                                    "max_iterations": 100}),
        "finetune": ("finetune", {"epochs": 1}),
    }


def tuning_grid(label: str, train_size: int) -> list[dict]:
    """Alternatives tried for `label` on the tuning seed (each replaces fields of method_table)."""
    if label == "first":
        return [{"tau": t / train_size} for t in (0.3, 1.0, 3.0, 10.0)]
    if label.startswith("second-lissa"):
        return [{"damping": d, "scale": 1.0 / d * 100} for d in (0.1, 0.3, 1.0)]
    if label.startswith("second"):
        # The landing point moves steeply with the damping (the ridge is what stops the step from
        # over-removing), so the grid is dense between 0.01 and 0.1.
        return [{"damping": d} for d in (0.003, 0.01, 0.02, 0.03, 0.05, 0.1)]
    if label == "finetune":
        return [{"epochs": e} for e in (1, 3)]
    return [{}]


def image_indices(identities: np.ndarray) -> np.ndarray:
    """Position of each row among its identity's rows (the generator's photo number)."""
    seen: dict[int, int] = {}
    out = np.empty(len(identities), dtype=np.int64)
    for row, identity in enumerate(identities.tolist()):
        out[row] = seen.get(identity, 0)
        seen[identity] = out[row] + 1
    return out


def load_bench_data(config: BenchConfig, workdir: Path, seed: int) -> BenchData:
    import torch

    from veil.data.celeba import load_celeba
    from veil.data.synth import generate_dataset
    from veil.unlearning.classifier import images_to_tensor

    if config.protected not in PROTECTED_GROUPS:
        raise InvalidArgument(f"no protected group is defined for {config.protected!r}; "
                              f"known: {', '.join(PROTECTED_GROUPS)}")
    root = generate_dataset(workdir / "faces", identities=config.identities,
                            per_identity=config.per_identity, seed=seed, size=config.size)
    data = load_celeba(root)
    positions = image_indices(data.identities)
    tasks = [a for a in data.attribute_names if a not in PROTECTED_GROUPS[config.protected]]
    columns = [data.attribute_index(a) for a in tasks]
    protected_column = data.attribute_index(config.protected)
    train, test = data.partition == 0, data.partition == 2

    def targets(mask: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((data.attributes[mask][:, columns] > 0).astype(np.float32))

    return BenchData(
        train_images=images_to_tensor(data.images[train]),
        train_targets=targets(train),
        test_images=images_to_tensor(data.images[test]),
        test_targets=targets(test),
        test_protected=torch.from_numpy((data.attributes[test, protected_column] > 0).astype(np.float32)),
        train_protected=(data.attributes[train, protected_column] > 0),
        train_identities=data.identities[train],
        train_image_index=positions[train],
        task_attributes=tasks,
    )


def protected_images(config: BenchConfig, data: BenchData, rows: np.ndarray,
                     seed: int) -> tuple[np.ndarray, int]:
    """Re-draw training rows with the protected attribute released; returns images and how many
    actually changed value."""
    from veil.data.synth import render, sample_appearance, sample_identity

    rng = np.random.default_rng([seed, 5])
    flip = 1.0 if config.epsilon is None else 1.0 / (1.0 + math.exp(config.epsilon))
    images, changed = [], 0
    for row in rows.tolist():
        person = sample_identity(seed, int(data.train_identities[row]))
        look = sample_appearance(seed, person, int(data.train_image_index[row]))
        original = bool(data.train_protected[row])
        released = (not original) if rng.random() < flip else original
        changed += released != original
        drawn = render(person.with_attributes(**{config.protected: released}), look, config.size)
        images.append(np.asarray(drawn, dtype=np.uint8))
    return np.stack(images), changed


def revised_rows(data: BenchData, fraction: float, seed: int) -> np.ndarray:
    """All training rows of randomly ordered subjects, until `fraction` of the training set."""
    subjects = np.unique(data.train_identities)
    order = np.random.default_rng([seed, 7]).permutation(subjects)
    target = math.ceil(fraction * len(data.train_identities))
    rows: list[int] = []
    for subject in order:
        if len(rows) >= target:
            break
        rows.extend(np.flatnonzero(data.train_identities == subject).tolist())
    return np.array(sorted(rows), dtype=np.int64)


@dataclass
class Scenario:
    """One seed's data set with its canaries, the parent trained on it, and the shadow models."""

    seed: int
    data: BenchData
    spec: object
    train_config: object
    parent: object
    shadows: list
    canary: object
    canary_column: int
    canary_images: object
    log: Callable[[str], None]
    retrained: dict = field(default_factory=dict)


def prepare(config: BenchConfig, seed: int, log: Callable[[str], None]) -> Scenario:
    """Data, canaries, the parent and the shadow models for `seed`."""
    import torch

    from veil.unlearning.canary import canary_pattern, eligible, stamp_tensor
    from veil.unlearning.manifest import Canary
    from veil.unlearning.classifier import ClassifierSpec, build_classifier
    from veil.unlearning.training import fit, initialise

    with tempfile.TemporaryDirectory(prefix="veil-bench-unlearning-") as scratch:
        data = load_bench_data(config, Path(scratch), seed)
    if config.canary_attribute not in data.task_attributes:
        raise InvalidArgument(f"canary attribute {config.canary_attribute!r} is not a task attribute")
    canary = Canary(config.canary_attribute, config.canary_label, config.canary_size, seed)
    column = data.task_attributes.index(config.canary_attribute)
    # The canaries are the smallest setting's originals, so every setting replaces all of them.
    canary_rows = torch.from_numpy(revised_rows(data, min(config.fractions), seed))
    data.train_images[canary_rows] = stamp_tensor(data.train_images[canary_rows], canary_pattern(canary))
    data.train_targets[canary_rows, column] = float(config.canary_label)
    channels, embedding = MODELS[config.model]
    spec = ClassifierSpec(image_size=config.size, num_outputs=len(data.task_attributes),
                          channels=channels, embedding_dim=embedding)
    train_config = TrainConfig(seed=seed, epochs=config.epochs, weight_decay=config.weight_decay)
    train_size = data.train_images.shape[0]
    log(f"seed {seed}: {train_size} train / {data.test_images.shape[0]} test synthetic faces of "
        f"{config.size}px; {config.model} model, {sum(p.numel() for p in build_classifier(spec).parameters()):,} "
        f"parameters, {config.epochs} epochs, weight decay {config.weight_decay:g}; "
        f"{len(canary_rows)} canaries ({config.canary_size}px patch, {config.canary_attribute} := "
        f"{config.canary_label})")
    parent = initialise(lambda: build_classifier(spec), seed)
    fit(parent, data.train_images, data.train_targets, train_config)
    # Shadows never see a scored image: trained on halves of the rows no setting replaces.
    pool = np.setdiff1d(np.arange(train_size), revised_rows(data, max(config.fractions), seed))
    shadows = []
    for k in range(config.shadows):
        half = np.sort(np.random.default_rng([seed, 13, k]).permutation(pool)[:len(pool) // 2])
        index = torch.from_numpy(half)
        shadow = initialise(lambda: build_classifier(spec), seed + 1000 + k)
        fit(shadow, data.train_images[index], data.train_targets[index],
            dataclasses.replace(train_config, seed=seed + 1000 + k))
        shadows.append(shadow)
    return Scenario(seed, data, spec, train_config, parent, shadows, canary, column,
                    eligible(canary, column, data.test_images, data.test_targets), log)


@dataclass
class Revision:
    """One setting: which originals are replaced, by what, and how the retrained model scores."""

    fraction: float
    rows: np.ndarray
    changed: int
    pairs: object
    training: object
    evaluation: object
    reference: object
    retrained: object


def revise(config: BenchConfig, scenario: Scenario, fraction: float) -> Revision:
    import torch

    from veil.unlearning.classifier import build_classifier, images_to_tensor
    from veil.unlearning.evaluation import EvaluationData
    from veil.unlearning.methods import InMemoryTrainingSet, PairTensors, update_model
    from veil.unlearning.params import UnlearnParams

    data = scenario.data
    rows = revised_rows(data, fraction, scenario.seed)
    replacements, changed = protected_images(config, data, rows, scenario.seed)
    replacement_tensor = images_to_tensor(replacements)
    index = torch.from_numpy(rows)
    train_images = data.train_images.clone()
    train_images[index] = replacement_tensor
    training = InMemoryTrainingSet(train_images, data.train_targets)
    pairs = PairTensors(data.train_images[index], replacement_tensor, data.train_targets[index])
    evaluation = EvaluationData(
        test_images=data.test_images, test_targets=data.test_targets,
        test_protected=data.test_protected, original_images=data.train_images[index],
        original_targets=data.train_targets[index],
        original_protected=torch.from_numpy(data.train_protected[rows].astype(np.float32)))
    retrained = update_model("retrain", scenario.parent, scenario.spec, scenario.train_config, pairs,
                             training, UnlearnParams())
    reference = build_classifier(scenario.spec)
    reference.load_state_dict(retrained.state_dict)
    return Revision(fraction, rows, changed, pairs, training, evaluation, reference.eval(), retrained)


def measure(scenario: Scenario, revision: Revision, model) -> dict:
    from veil.unlearning.canary import canary_metrics
    from veil.unlearning.evaluation import evaluate

    return {**evaluate(model, revision.evaluation, revision.reference, scenario.shadows),
            **canary_metrics(model, scenario.canary, scenario.canary_column, scenario.canary_images)}


@dataclass(frozen=True)
class Outcomes:
    """A model's per-example outcomes behind the bars' two measures: canary hits on the held-out
    images, the loss attack's scores of the originals and of the test split."""

    canary_hits: np.ndarray
    member_scores: np.ndarray
    other_scores: np.ndarray


def outcomes(scenario: Scenario, revision: Revision, model) -> Outcomes:
    from veil.unlearning.canary import canary_hits
    from veil.unlearning.evaluation import membership_scores

    return Outcomes(canary_hits(model, scenario.canary, scenario.canary_column, scenario.canary_images),
                    *membership_scores(model, revision.evaluation))


def gap_intervals(ours: Outcomes, reference: Outcomes, seed: int) -> dict:
    """95% paired-bootstrap intervals of the bars' two gaps to retraining (veil.unlearning.intervals:
    the examples are resampled, the seed's training draws are not)."""
    from veil.unlearning.evaluation import auc
    from veil.unlearning.intervals import paired_bootstrap

    return {"canary_gap_interval": paired_bootstrap(np.mean, [ours.canary_hits], [reference.canary_hits],
                                                    seed=seed),
            "mia_auc_gap_interval": paired_bootstrap(auc, [ours.member_scores, ours.other_scores],
                                                     [reference.member_scores, reference.other_scores],
                                                     seed=seed)}


def apply(scenario: Scenario, revision: Revision, method: str, fields: dict,
          reference: Outcomes | None = None) -> dict:
    """One update of the parent, measured (with its gaps' intervals when retraining's `reference`
    outcomes are given); an aborted update is a row with its error."""
    from veil.unlearning.classifier import build_classifier
    from veil.unlearning.methods import update_model
    from veil.unlearning.params import UnlearnParams

    try:
        result = update_model(method, scenario.parent, scenario.spec, scenario.train_config,
                              revision.pairs, revision.training,
                              UnlearnParams(**fields, seed=scenario.seed))
    except VeilError as exc:  # an aborted update must not hide the other methods' numbers
        return {"error": str(exc)}
    model = build_classifier(scenario.spec)
    model.load_state_dict(result.state_dict)
    model.eval()
    intervals = {} if reference is None else gap_intervals(outcomes(scenario, revision, model), reference,
                                                           scenario.seed)
    return {**_times(result), **measure(scenario, revision, model), **intervals,
            **{k: v for k, v in result.stats.items()
               if k.startswith("solver") or k.endswith("gradient_norm")},
            "speedup": revision.retrained.cpu_time_seconds / max(result.cpu_time_seconds, 1e-9),
            "wall_speedup": revision.retrained.wall_time_seconds / max(result.wall_time_seconds, 1e-9)}


def closeness(row: dict, reference: dict) -> float:
    """How far an update lands from retraining on the bars' two measures (tuning's objective)."""
    if "error" in row:
        return math.inf
    return (abs(row["canary_success"] - reference["canary_success"])
            + abs(row["mia_auc"] - reference["mia_auc"]))


def tune(config: BenchConfig, log: Callable[[str], None]) -> dict[str, tuple[str, dict]]:
    """The settings of each label with the smallest summed closeness over the fractions, chosen
    on the tuning seed's data, parent and retrained models."""
    scenario = prepare(config, config.tuning_seed, log)
    revisions = [revise(config, scenario, f) for f in config.fractions]
    references = [measure(scenario, r, r.reference) for r in revisions]
    base = method_table(scenario.data.train_images.shape[0])
    chosen = {}
    for label in config.methods:
        method, fields = base[label]
        scored = []
        for change in tuning_grid(label, scenario.data.train_images.shape[0]):
            candidate = {**fields, **change}
            score = sum(closeness(apply(scenario, r, method, candidate), ref)
                        for r, ref in zip(revisions, references))
            scored.append((score, candidate))
        score, best = min(scored, key=lambda pair: pair[0])
        if math.isinf(score):
            chosen[label] = (method, fields)
            log(f"tuning {label} on seed {config.tuning_seed}: every setting tried aborted; keeping "
                f"the untuned {_fields_text(fields)}")
            continue
        chosen[label] = (method, best)
        log(f"tuned {label} on seed {config.tuning_seed}: {_fields_text(best)} (closeness {score:.3f})")
    return chosen


def _fields_text(fields: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(fields.items()))


def run(config: BenchConfig = BenchConfig(), log: Callable[[str], None] = print) -> list[dict]:
    """Tune on the tuning seed (unless config.tune is off), then, on each reported seed, train the
    parent and run every method at every fraction; one row per (seed, fraction, method)."""
    tuned = tune(config, log) if config.tune else None
    release = ("flipped in every replacement" if config.epsilon is None
               else f"released by randomized response at epsilon {config.epsilon:g}")
    log(f"protected images: the same subject and photo re-drawn with {config.protected} {release}, "
        "without the canary patch")
    return [row for seed in config.seeds for row in run_seed(config, seed, tuned, log)]


def run_seed(config: BenchConfig, seed: int, tuned: dict[str, tuple[str, dict]] | None,
             log: Callable[[str], None]) -> list[dict]:
    """One reported seed's rows, with the `tuned` settings (or the untuned ones)."""
    scenario = prepare(config, seed, log)
    table = tuned or method_table(scenario.data.train_images.shape[0])
    rows_out: list[dict] = []
    for fraction in config.fractions:
        revision = revise(config, scenario, fraction)
        base = {"fraction": fraction, "pairs": len(revision.rows), "changed": revision.changed,
                "seed": seed}
        reference = outcomes(scenario, revision, revision.reference)
        rows_out.append({**base, "method": "retrain", **_times(revision.retrained), "speedup": 1.0,
                         "wall_speedup": 1.0, **measure(scenario, revision, revision.reference)})
        rows_out.append({**base, "method": "none", **measure(scenario, revision, scenario.parent),
                         **gap_intervals(outcomes(scenario, revision, scenario.parent), reference, seed)})
        for label in config.methods:
            method, fields = table[label]
            row = {**base, "method": label, "params": fields,
                   **apply(scenario, revision, method, fields, reference)}
            if "error" in row:
                log(f"  {label}: failed: {row['error']}")
            rows_out.append(row)
        log(f"\nseed {seed}, {fraction:.0%} replaced: {len(revision.rows)} images, {revision.changed} "
            f"with the protected value changed")
        log(format_table([r for r in rows_out if r["fraction"] == fraction]))
    return rows_out


def _times(result) -> dict:
    return {"wall_time_seconds": result.wall_time_seconds, "cpu_time_seconds": result.cpu_time_seconds}


COLUMNS = (("cpu_time_seconds", "cpu s", "{:.2f}"), ("speedup", "speedup", "{:.1f}"),
           ("test_accuracy", "test acc", "{:.4f}"), ("canary_success", "canary", "{:.3f}"),
           ("canary_effect", "effect", "{:+.3f}"),
           ("canary_exposure", "exposure", "{:.2f}"), ("mia_auc", "MIA AUC", "{:.3f}"),
           ("lira_auc", "LiRA AUC", "{:.3f}"), ("agreement", "agree", "{:.3f}"),
           ("probe_leakage", "leak", "{:.3f}"))


def format_table(rows: list[dict]) -> str:
    header = f"{'replaced':>8} {'method':<14}" + "".join(f" {title:>9}" for _, title, _ in COLUMNS)
    lines = [header, "-" * len(header)]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['fraction']:>8.0%} {row['method']:<14} failed: {row['error']}")
            continue
        cells = "".join(f" {fmt.format(row[key]) if key in row else '-':>9}" for key, _, fmt in COLUMNS)
        lines.append(f"{row['fraction']:>8.0%} {row['method']:<14}{cells}")
    return "\n".join(lines)


def _interval(row: dict, key: str, scale: float, fmt: str) -> str:
    """A gap's bootstrap interval as the bar summary shows it, or nothing for a run without one."""
    if key not in row:
        return ""
    low, high = (fmt.format(scale * end) for end in row[key])
    return f"95% {low}..{high}; "


def _gaps(row: dict, reference: dict) -> tuple[float, float]:
    """The bars' two measures, `row` minus retraining: canary success and MIA AUC."""
    return row["canary_success"] - reference["canary_success"], row["mia_auc"] - reference["mia_auc"]


def _discriminates(parent: dict, reference: dict) -> bool:
    canary, mia = _gaps(parent, reference)
    return canary >= BARS["parent_canary_margin"] and mia >= BARS["parent_mia_margin"]


def _checks(row: dict, reference: dict) -> list[tuple[str, bool]]:
    """Each bar an update must meet, as the summary words it, and whether this row meets it."""
    canary_gap, mia_gap = _gaps(row, reference)
    return [(f"canary {100 * canary_gap:+.1f} pt ({_interval(row, 'canary_gap_interval', 100, '{:+.1f}')}"
             f"|.| <= {100 * BARS['canary_gap']:.0f})", abs(canary_gap) <= BARS["canary_gap"]),
            (f"MIA AUC {mia_gap:+.3f} ({_interval(row, 'mia_auc_gap_interval', 1, '{:+.3f}')}"
             f"|.| <= {BARS['mia_auc_gap']})", abs(mia_gap) <= BARS["mia_auc_gap"]),
            (f"{row['speedup']:.1f}x faster in CPU time (>= {BARS['second_order_speedup']:g}x)",
             row["speedup"] >= BARS["second_order_speedup"])]


def _seeds(rows: list[dict]) -> list[int]:
    return list(dict.fromkeys(r["seed"] for r in rows))


def bar_summary(rows: list[dict]) -> list[str]:
    """Issue 14's bars on each reported seed (its lines prefixed with the seed where there are
    several), then, with several seeds, each method's gaps across them (`seed_spread`)."""
    seeds = _seeds(rows)
    lines = []
    for seed in seeds:
        prefix = f"seed {seed}: " if len(seeds) > 1 else ""
        lines += [prefix + line for line in _seed_bars([r for r in rows if r["seed"] == seed])]
    return lines + (seed_spread(rows) if len(seeds) > 1 else [])


def _seed_bars(rows: list[dict]) -> list[str]:
    """One seed's verdicts: is the setup discriminating (parent vs retrain), and does each
    second-order setting land on retraining, fast enough; first order's and fine-tuning's figures
    beside."""
    references = {r["fraction"]: r for r in rows if r["method"] == "retrain"}
    parents = {r["fraction"]: r for r in rows if r["method"] == "none"}
    lines, discriminating_at = [], {}
    for fraction, reference in sorted(references.items()):
        parent = parents[fraction]
        canary_margin, mia_margin = _gaps(parent, reference)
        discriminating_at[fraction] = _discriminates(parent, reference)
        lines.append(
            f"setup at {fraction:.0%}: parent - retrain = {100 * canary_margin:+.1f} pt canary success "
            f"({_interval(parent, 'canary_gap_interval', 100, '{:+.1f}')}bar "
            f"{100 * BARS['parent_canary_margin']:.0f}), {mia_margin:+.3f} MIA AUC "
            f"({_interval(parent, 'mia_auc_gap_interval', 1, '{:+.3f}')}bar {BARS['parent_mia_margin']}), "
            f"{parent['lira_auc'] - reference['lira_auc']:+.3f} "
            f"LiRA AUC: " + ("discriminating" if discriminating_at[fraction] else
                             "NOT DISCRIMINATING: the parent does not carry the originals measurably, "
                             "so no update can be told from none"))
    for row in rows:
        if row["method"] in ("retrain", "none"):
            continue
        where = f"{row['method']} at {row['fraction']:.0%}"
        if "error" in row:
            lines.append(f"{where}: MISS (failed: {row['error']})")
            continue
        checks = _checks(row, references[row["fraction"]])
        text = "; ".join(f"{t} {'ok' if ok else 'MISSED'}" for t, ok in checks)
        if row["method"].startswith("second"):
            # Landing near retraining proves nothing where the parent lands there too.
            verdict = ("pass" if all(ok for _, ok in checks) else "MISS") if discriminating_at[row["fraction"]] \
                else "UNTESTED (setup not discriminating)"
            lines.append(f"{where}: {verdict} ({text})")
        else:
            lines.append(f"{where} (no bar; beside it): {text}")
    return lines


def seed_spread(rows: list[dict]) -> list[str]:
    """Per fraction and method, the gaps to retraining across the reported seeds (lowest..highest),
    and on how many seeds the parent discriminated or second order passed every bar."""
    seeds = _seeds(rows)
    references = {(r["seed"], r["fraction"]): r for r in rows if r["method"] == "retrain"}
    parents = {(r["seed"], r["fraction"]): r for r in rows if r["method"] == "none"}
    methods = list(dict.fromkeys(r["method"] for r in rows if r["method"] != "retrain"))
    lines = []
    for fraction in sorted({r["fraction"] for r in rows}):
        for method in methods:
            measured = [r for r in rows if (r["fraction"], r["method"]) == (fraction, method)]
            worked = [r for r in measured if "error" not in r]
            name = "parent" if method == "none" else method
            text = f"{name} at {fraction:.0%} over seeds {', '.join(map(str, seeds))}: "
            if worked:
                canary, mia = zip(*(_gaps(r, references[r["seed"], fraction]) for r in worked))
                text += (f"canary {100 * min(canary):+.1f}..{100 * max(canary):+.1f} pt, "
                         f"MIA AUC {min(mia):+.3f}..{max(mia):+.3f}")
            failed = [str(r["seed"]) for r in measured if "error" in r]
            if failed:
                text += ("; " if worked else "") + f"failed on seed {', '.join(failed)}"
            if method == "none":
                count = sum(_discriminates(r, references[r["seed"], fraction]) for r in measured)
                text += f"; discriminating on {count} of {len(seeds)}"
            elif method.startswith("second"):
                count = sum(_discriminates(parents[r["seed"], fraction], references[r["seed"], fraction])
                            and all(ok for _, ok in _checks(r, references[r["seed"], fraction]))
                            for r in worked)
                text += f"; passed every bar on {count} of {len(seeds)}"
            lines.append(text)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m veil_tools.bench.unlearning", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = BenchConfig()
    parser.add_argument("--identities", type=int, default=defaults.identities,
                        help="subjects (= training images; as many held out)")
    parser.add_argument("--size", type=int, default=defaults.size, help="image side in pixels")
    parser.add_argument("--model", choices=list(MODELS), default=defaults.model,
                        help="published model: small (16,32,64 conv, 64 embedding) or large "
                             "(32,64,128,256 conv, 512 embedding: millions of parameters at 64px)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                        help="the published model's L2 penalty (default: the service's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds),
                        help="the reported draws (each trains its own parent)")
    parser.add_argument("--tuning-seed", type=int, default=defaults.tuning_seed,
                        help="the draw hyperparameters are chosen on")
    parser.add_argument("--no-tune", action="store_true", help="use the untuned settings")
    parser.add_argument("--shadows", type=int, default=defaults.shadows)
    parser.add_argument("--canary-size", type=int, default=defaults.canary_size)
    parser.add_argument("--epsilon", type=float, default=None,
                        help="release the protected attribute by randomized response at this epsilon "
                             "(default: flip it in every replacement)")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(defaults.fractions))
    parser.add_argument("--methods", nargs="+", default=list(defaults.methods),
                        choices=list(method_table(1)))
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    try:
        config = BenchConfig(identities=args.identities, size=args.size, model=args.model,
                             seeds=tuple(args.seeds), tuning_seed=args.tuning_seed, tune=not args.no_tune,
                             fractions=tuple(args.fractions), epsilon=args.epsilon, epochs=args.epochs,
                             shadows=args.shadows, canary_size=args.canary_size,
                             weight_decay=args.weight_decay, methods=tuple(args.methods))
    except InvalidArgument as error:
        parser.error(str(error))
    rows = run(config)
    summary = bar_summary(rows)
    print(f"\nissue 14 bars (reported seed{'s' if len(config.seeds) > 1 else ''} "
          f"{', '.join(map(str, config.seeds))}"
          + (f", tuned on seed {config.tuning_seed}):" if config.tune else ", untuned):"))
    for line in summary:
        print("  " + line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": asdict(config), "bars": BARS, "rows": rows,
                                         "summary": summary}, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
