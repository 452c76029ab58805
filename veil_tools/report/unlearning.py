"""The report's section on feature unlearning (veil_tools.bench.unlearning's JSON): per replaced
fraction, each update method against retraining from scratch, the issue-14 bar verdicts, and one
figure of canary success and membership AUC per method."""

from __future__ import annotations

import math
from pathlib import Path

from veil_tools.bench.unlearning import bar_summary
from veil_tools.report.figures import new_figure, save_png
from veil_tools.report.markdown import cell

FIGURE = "unlearning.png"

# The bench's two reference rows, under the names a reader needs.
REFERENCE_NAMES = {"retrain": "retrain (reference)", "none": "parent (no update)"}

MISSING = "–"


def method_name(method: str) -> str:
    return REFERENCE_NAMES.get(method, method)


def number(row: dict, key: str, fmt: str) -> str:
    """`row[key]` formatted, or a dash where the row lacks it (a failed update, the parent's time)."""
    value = row.get(key)
    return MISSING if value is None else fmt.format(value)


def with_gap(row: dict, reference: dict, key: str, fmt: str, gap_fmt: str, scale: float) -> str:
    """The value and, beside it, its difference to retraining's (none on retraining's own row)."""
    text = number(row, key, fmt)
    if row is reference or row.get(key) is None or reference.get(key) is None:
        return text
    return f"{text} ({gap_fmt.format(scale * (row[key] - reference[key]))})"


def table_row(row: dict, reference: dict) -> str:
    if "error" in row:
        return f"| {method_name(row['method'])} | failed: {cell(row['error'])} |" + " |" * 8
    cells = [method_name(row["method"]),
             number(row, "cpu_time_seconds", "{:.2f}"),
             number(row, "speedup", "{:.1f}x"),
             number(row, "test_accuracy", "{:.4f}"),
             with_gap(row, reference, "canary_success", "{:.3f}", "{:+.1f} pt", 100.0),
             number(row, "canary_effect", "{:+.3f}"),
             number(row, "canary_exposure", "{:.2f}"),
             with_gap(row, reference, "mia_auc", "{:.3f}", "{:+.3f}", 1.0),
             number(row, "lira_auc", "{:.3f}"),
             number(row, "probe_leakage", "{:.3f}")]
    return "| " + " | ".join(cells) + " |"


def seeds_text(seeds: list[int]) -> str:
    return str(seeds[0]) if len(seeds) == 1 else f"{', '.join(map(str, seeds[:-1]))} and {seeds[-1]}"


def by_fraction(rows: list[dict]) -> dict[float, list[dict]]:
    """Rows grouped per replaced fraction, fractions ascending, the bench's method order kept."""
    groups: dict[float, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["fraction"], []).append(row)
    return dict(sorted(groups.items()))


def reference_row(rows: list[dict]) -> dict:
    """Retraining's row of one fraction (the bench writes one per fraction)."""
    return next(r for r in rows if r["method"] == "retrain")


def plot(groups: dict[float, list[dict]], path: Path) -> None:
    """Per method, one bar per fraction; retraining's value at each fraction is a dashed line in
    that fraction's colour, so a bar reaching its line is an update that lands on retraining."""
    methods = [r["method"] for r in next(iter(groups.values())) if r["method"] != "retrain"]
    figure, axes = new_figure(12, 4.5, columns=2)
    width = 0.8 / len(groups)
    for axis, key, title in ((axes[0], "canary_success", "Canary success"),
                             (axes[1], "mia_auc", "Membership AUC (loss attack) on replaced originals")):
        for k, (fraction, rows) in enumerate(groups.items()):
            colour = f"C{k}"
            values = {r["method"]: r.get(key, math.nan) for r in rows}
            offsets = [m + (k - (len(groups) - 1) / 2) * width for m in range(len(methods))]
            axis.bar(offsets, [values.get(m, math.nan) for m in methods], width=width, color=colour,
                     label=f"{fraction:.0%} replaced")
            for offset, method in zip(offsets, methods):
                if math.isnan(values.get(method, math.nan)):
                    axis.text(offset, 0.02, "failed", rotation=90, ha="center", va="bottom", fontsize=7)
            axis.axhline(values["retrain"], color=colour, linestyle="--", linewidth=1,
                         label=f"retrain at {fraction:.0%}")
        axis.set_xticks(range(len(methods)), [method_name(m).replace(" (", "\n(") for m in methods],
                        fontsize=8, rotation=30, ha="right")
        # A failed method draws no bar, so autoscaling alone could cut its column off.
        axis.set_xlim(-0.5, len(methods) - 0.5)
        # Headroom above 1 keeps the legend off the bars whatever the values.
        axis.set_ylim(0, 1.3)
        axis.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        axis.set_title(title, fontsize=10)
        axis.legend(fontsize=7, loc="upper center", ncol=len(groups))
    axes[0].set_ylabel("held-out faces given the canary label once stamped")
    axes[1].set_ylabel("AUC (0.5 = originals look held out)")
    save_png(figure, path)


def setup_paragraph(config: dict, groups: dict[float, list[dict]]) -> str:
    # The canaries are the smallest fraction's originals (the bench stamps exactly those).
    canaries = next(iter(groups.values()))[0]["pairs"]
    reported = config["seeds"]
    drawn = (f"seed {reported[0]}, a different draw" if len(reported) == 1 else
             f"seeds {seeds_text(reported)}, other draws, each with its own data, canaries and parent; "
             f"the tables and the figure are seed {reported[0]}'s")
    seeds = (f"Hyperparameters were tuned on seed {config['tuning_seed']} and the numbers are from {drawn}"
             if config["tune"] else
             f"The numbers are from seed{'s' if len(reported) > 1 else ''} {seeds_text(reported)}, with "
             f"the untuned settings")
    release = ("with the protected attribute flipped" if config.get("epsilon") is None else
               f"with the protected attribute released by randomized response at epsilon "
               f"{config['epsilon']:g}")
    return (f"A classifier ({config['model']} model, {config['epochs']} epochs, weight decay "
            f"{config['weight_decay']:g}) is trained on "
            f"synthetic faces of {config['identities']} subjects, {config['per_identity']} photos each "
            f"(split into train and test photos), at {config['size']}x{config['size']} px, to predict "
            f"the attributes other than {config['protected']} and those implying it. {canaries} training photos carry a {config['canary_size']} px "
            f"canary patch labelled {config['canary_attribute']} = {config['canary_label']}. Then a "
            f"fraction of the training photos (always including the canaries) is replaced by the same "
            f"subject re-drawn {release} and without the patch, and each method updates the parent; "
            f"retraining from scratch is the reference. {seeds}. Membership AUC uses a loss threshold; "
            f"LiRA uses {config['shadows']} shadow models that saw none of the scored images. Speedups "
            f"are CPU-time ratios against retraining. The patch effect is canary success minus the "
            f"rate of the canary label on the same faces without the patch: an update that pushes "
            f"every prediction toward the label (fitting replacements that keep the planted label) "
            f"raises success but not the effect.")


def spread_table(rows: list[dict], seeds: list[int]) -> list[str]:
    """Per fraction and method, each seed's gaps to retraining (canary points / MIA AUC); a failed
    update's reason is in the bars below it."""
    cells: dict[tuple[float, str], dict[int, str]] = {}
    references = {(r["seed"], r["fraction"]): r for r in rows if r["method"] == "retrain"}
    for row in rows:
        if row["method"] == "retrain":
            continue
        reference = references[row["seed"], row["fraction"]]
        cells.setdefault((row["fraction"], row["method"]), {})[row["seed"]] = (
            "failed" if "error" in row else
            f"{100 * (row['canary_success'] - reference['canary_success']):+.1f} pt / "
            f"{row['mia_auc'] - reference['mia_auc']:+.3f}")
    return (["| replaced | method | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|" + "---|" * len(seeds)]
            + [f"| {fraction:.0%} | {method_name(method)} | " + " | ".join(by_seed.get(s, MISSING) for s in seeds)
               + " |" for (fraction, method), by_seed in sorted(cells.items(), key=lambda item: item[0][0])])


def render(data: dict, figures: Path) -> str:
    """The section's markdown; its figure is written under `figures`."""
    seeds = data["config"]["seeds"]
    groups = by_fraction([r for r in data["rows"] if r["seed"] == seeds[0]])
    plot(groups, figures / FIGURE)
    lines = ["## Feature unlearning against retraining", "", setup_paragraph(data["config"], groups), "",
             f"![canary success and membership AUC per method, retraining dashed](figures/{FIGURE})", ""]
    for fraction, rows in groups.items():
        first = rows[0]
        reference = reference_row(rows)
        lines += [f"### {fraction:.0%} replaced ({first['pairs']} photos, {first['changed']} with the "
                  f"protected value changed)", "",
                  "| method | CPU s | speedup vs retrain | test acc | canary success (vs retrain) "
                  "| patch effect | exposure | MIA AUC (vs retrain) | LiRA AUC | probe leakage |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [table_row(row, reference) for row in rows]
        lines.append("")
    if len(seeds) > 1:
        lines += [f"### Across seeds {seeds_text(seeds)}", "",
                  "Each update's (and the parent's) gap to retraining on each reported seed: canary "
                  "success in points / MIA AUC.", ""] + spread_table(data["rows"], seeds) + [""]
    lines += ["### Bars (issue 14)", ""]
    verdicts = bar_summary(data["rows"])
    lines += [f"- {line}" for line in verdicts]
    if verdicts != data.get("summary"):
        lines += ["", "These differ from the verdicts the bench printed when it measured (its bars or "
                      "the rows have changed since): they apply the current bars to the rows in the JSON."]
    lines.append("")
    return "\n".join(lines)
