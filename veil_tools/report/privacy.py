"""The report's section on the privacy evaluation (`veil eval --json`): the leakage audit's
attackers against the randomized-response bound and the Bayes ceiling (per eps of the
attribute-only release and per level), identity and utility per level, example releases, every
bar with its verdict, and which probes served what.

Intervals are the JSON's 95% intervals, written "value (low-high)"; "n/a" where the eval had no
trials to count (e.g. no probe to edit in one direction).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from veil.diffusion.audit import ATTRIBUTE_ONLY
from veil.diffusion.mechanisms import keep_probability
from veil_tools.report.figures import new_figure, save_png
from veil_tools.report.markdown import cell
EPS_FIGURE = "attacker-vs-eps.png"
LEVEL_FIGURE = "attacker-vs-level.png"
IDENTITY_FIGURE = "identity-vs-level.png"
UTILITY_FIGURE = "utility-vs-level.png"
CLEAN, ADAPTIVE, CEILING, BOUND, ORIGINALS = "tab:blue", "tab:red", "tab:gray", "black", "tab:green"


def interval(value: dict) -> str:
    if any(math.isnan(value[k]) for k in ("value", "low", "high")):
        return "n/a"
    return f"{value['value']:.3f} ({value['low']:.3f}-{value['high']:.3f})"


def errorbar(axis, x: list[float], values: list[dict], **style) -> None:
    """Points at the values with their 95% intervals as error bars."""
    y = np.array([v["value"] for v in values], dtype=float)
    low = np.array([v["low"] for v in values], dtype=float)
    high = np.array([v["high"] for v in values], dtype=float)
    axis.errorbar(x, y, yerr=[y - low, high - y], capsize=3, **style)


def plot_attackers(settings: list[dict], x: list[float], offset: float, attribute: str, xlabel: str,
                   bound_curve: tuple[np.ndarray, np.ndarray], bound_style: str, path: Path) -> None:
    """Clean and adaptive attackers and the ceiling at `x` (one per setting), and the bound's curve."""
    figure, (axis,) = new_figure(7, 4.2)
    axis.plot(*bound_curve, bound_style, color=BOUND, linewidth=1, label="bound e^eps/(1+e^eps)")
    errorbar(axis, [v - offset for v in x], [s["clean"] for s in settings], fmt="o", color=CLEAN,
             label="clean-trained attacker")
    errorbar(axis, [v + offset for v in x], [s["adaptive"] for s in settings], fmt="s", color=ADAPTIVE,
             label="adaptive attacker")
    errorbar(axis, x, [s["ceiling"] for s in settings], fmt="^--", color=CEILING, markersize=4,
             label="Bayes ceiling (released value + unchanged attributes)")
    axis.set_xticks(x, [f"{v:g}" for v in x])
    axis.set_xlabel(xlabel)
    axis.set_ylabel(f"expected accuracy on the original {attribute}")
    lowest = min(s[k]["low"] for s in settings for k in ("clean", "adaptive", "ceiling"))
    axis.set_ylim(min(0.4, lowest - 0.02), 1.02)  # an attacker worse than chance stays in view
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    save_png(figure, path)


def plot_identity(sweep: dict, path: Path) -> None:
    levels = [e["level"] for e in sweep["levels"]]
    originals = sweep["originals"]
    figure, (axis,) = new_figure(7, 4.2)
    for key, gallery, color, shift in (("reid", sweep["gallery"], "tab:purple", -0.08),
                                       ("reid_small", sweep["small_gallery"], "tab:orange", 0.08)):
        errorbar(axis, [lv + shift for lv in levels], [e[key] for e in sweep["levels"]], fmt="o-", color=color,
                 label=f"released, gallery {gallery}")
        axis.axhline(originals[key]["value"], color=color, linestyle="--", linewidth=1,
                     label=f"originals, gallery {gallery}")
        axis.axhline(1 / gallery, color=color, linestyle=":", linewidth=1, label=f"chance 1/{gallery}")
    axis.set_xlabel(f"privacy level ({sweep['attribute']} protected)")
    axis.set_ylabel("top-1 re-identification rate")
    axis.set_xticks(levels)
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper right")
    save_png(figure, path)


def plot_utility(sweep: dict, path: Path) -> None:
    levels = [e["level"] for e in sweep["levels"]]
    originals = sweep["originals"]["utility"]
    figure, (axis,) = new_figure(7, 4.2)
    axis.axhspan(originals["low"], originals["high"], color=ORIGINALS, alpha=0.12)
    axis.axhline(originals["value"], color=ORIGINALS, linestyle="--", linewidth=1, label="originals (band: 95%)")
    errorbar(axis, levels, [e["utility"] for e in sweep["levels"]], fmt="o-", color=CLEAN, label="released")
    axis.set_xlabel(f"privacy level ({sweep['attribute']} protected)")
    axis.set_ylabel("mean accuracy, non-protected attributes")
    axis.set_xticks(levels)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower left")
    save_png(figure, path)


def attacker_figures(audit: dict, figures: Path) -> list[str]:
    attribute = audit["attribute"]
    only = [s for s in audit["settings"] if s["name"] == ATTRIBUTE_ONLY]
    levels = [s for s in audit["settings"] if s["name"].startswith("level ")]
    lines = []
    if only:
        eps = [s["epsilon"] for s in only]
        curve = np.linspace(0, 1.1 * max(eps), 200)
        plot_attackers(only, eps, 0.03 * max(eps), attribute, f"eps of {attribute} (attribute-only release)",
                       (curve, [keep_probability(float(e)) for e in curve]), "-", figures / EPS_FIGURE)
        lines += [f"![expected attacker accuracy vs eps, attribute-only release](figures/{EPS_FIGURE})", ""]
    else:
        lines += ["The audit measured no attribute-only release.", ""]
    if levels:
        x = [float(s["name"].split()[1]) for s in levels]
        # Each level has its own eps: its bound is drawn at the level, joined only to guide the eye.
        plot_attackers(levels, x, 0.12, attribute, f"audited privacy level ({attribute} protected)",
                       (np.array(x), np.array([s["bound"] for s in levels])), "_-", figures / LEVEL_FIGURE)
        lines += [f"![expected attacker accuracy per audited level](figures/{LEVEL_FIGURE})", ""]
    else:
        lines += ["The audit measured no level.", ""]
    return lines


def audit_table(audit: dict) -> list[str]:
    attribute = audit["attribute"]
    verified = audit["config"].get("decode_tries", 0)  # absent in evals from before verified edits
    refused = "| flips refused -1 -> +1 | flips refused +1 -> -1 " if verified else ""
    lines = [f"| setting | eps | bound | clean attacker | adaptive attacker | ceiling | kept-vs-flipped AUC "
             f"| best AUC from released values | {attribute} realised -1 -> +1 | {attribute} realised +1 -> -1 "
             f"{refused}| largest utility drop |",
             "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if verified else "")]
    for s in audit["settings"]:
        worst = max(sorted(s["utility_drop"]), key=s["utility_drop"].get)
        refusals = (f"| {interval(s['refused_to_plus'])} | {interval(s['refused_to_minus'])} " if verified else "")
        lines.append(f"| {s['name']} | {s['epsilon']:g} | {s['bound']:.3f} | {interval(s['clean'])} "
                     f"| {interval(s['adaptive'])} | {interval(s['ceiling'])} | {interval(s['detector'])} "
                     f"| {interval(s['detector_ceiling'])} | {interval(s['realised_to_plus'])} "
                     f"| {interval(s['realised_to_minus'])} {refusals}| {s['utility_drop'][worst]:.3f} ({worst}) |")
    if verified:
        lines += ["", f"Verified edits as served (`VEIL_DECODE_TRIES={verified}`): an outcome the model's classifier "
                      "does not read as released is decoded again, and one that never does is refused, not released. "
                      "Every figure is over what is released (each outcome weighted by the mechanism and by whether "
                      "it was offered); the refused columns give the share of flips refused (kept outcomes refused: "
                      + ", ".join(sorted({interval(s['refused_kept']) for s in audit["settings"]})) + ")."]
    return lines


def eps_text(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def sweep_row(name: str, settings: list[str], measures: dict, seed: str) -> str:
    lowest = min(sorted(measures["accuracy"]), key=measures["accuracy"].get)
    cells = [name, *settings, interval(measures["reid"]), interval(measures["reid_small"]),
             interval(measures["utility"]), f"{lowest} {measures['accuracy'][lowest]:.3f}", seed]
    return "| " + " | ".join(cells) + " |"


def sweep_table(sweep: dict) -> list[str]:
    lines = [f"| level | eps {sweep['attribute']} | eps identity | rho | re-ID, gallery {sweep['gallery']} "
             f"| re-ID, gallery {sweep['small_gallery']} | non-protected accuracy (mean) | lowest attribute | seed |",
             "|---|---|---|---|---|---|---|---|---|",
             sweep_row("originals", ["-", "-", "-"], sweep["originals"], "-")]
    for e in sweep["levels"]:
        seed = f"{e['seed']} (the level-0 rows' reconstruction)" if e["reused"] else str(e["seed"])
        settings = [eps_text(e["attribute_epsilon"]), eps_text(e["identity_epsilon"]), f"{e['rho']:g}"]
        lines.append(sweep_row(str(e["level"]), settings, e, seed))
    return lines


def sweep_part(sweep: dict, figures: Path) -> list[str]:
    lines = ["### Identity and utility per level", ""]
    if not sweep["levels"]:
        return lines + ["The eval swept no level (`--sweep-levels` was empty).", ""]
    plot_identity(sweep, figures / IDENTITY_FIGURE)
    plot_utility(sweep, figures / UTILITY_FIGURE)
    lines += [
        f"Each level is one release of the eval's probes with {sweep['attribute']} protected (its group: "
        f"{', '.join(sweep['protected_group'])}), measured with the same clean-trained evaluators: top-1 "
        f"re-identification against galleries of {sweep['gallery']} and {sweep['small_gallery']} identities "
        "(95% Wilson intervals), and the attribute classifier's accuracy on the attributes outside the "
        f"protected group ({', '.join(sweep['utility_attributes'])}), averaged per probe (95% bootstrap "
        "interval over probes).",
        "",
        f"![re-identification per level](figures/{IDENTITY_FIGURE})",
        "",
        f"![non-protected accuracy per level](figures/{UTILITY_FIGURE})",
        "",
        *sweep_table(sweep),
        "",
    ]
    return lines


def examples_part(sweep: dict, figures: Path) -> list[str]:
    name = sweep.get("examples")
    if name is None:
        return ["The eval wrote no example grid (`veil eval --examples PATH`).", ""]
    if not (figures.parent / name).is_file():
        return [f"The example grid `{name}` named by the eval is absent from the report's folder.", ""]
    columns = ", ".join(f"level {e['level']}" for e in sweep["levels"])
    return [f"Examples: each row is one probe; the columns are the original, then {columns} "
            f"({sweep['attribute']} protected; the sweep's own releases, enlarged without smoothing).", "",
            f"![example releases per level]({name})", ""]


def sweep_and_examples(sweep: dict | None, figures: Path) -> list[str]:
    if sweep is None:  # a JSON of `veil eval` from before it swept levels
        return ["### Identity and utility per level", "", "This eval's JSON has no level sweep.", ""]
    return [*sweep_part(sweep, figures), *examples_part(sweep, figures)]


def bars_table(rows: list[dict]) -> list[str]:
    barred = [r for r in rows if r["bar"]]
    missed = [r["name"] for r in barred if r["passed"] is False]
    lines = [f"{len(barred) - len(missed)} of {len(barred)} bars met."
             + (f" Missed: {'; '.join(f'`{m}`' for m in missed)}." if missed else ""), "",
             "| measurement | value | bar | result | note |", "|---|---|---|---|---|"]
    for r in barred:
        verdict = "PASS" if r["passed"] else "**MISS**"
        lines.append(f"| {cell(r['name'])} | {r['measured']:.3f} | {r['bar']} | {verdict} | {cell(r['note'])} |")
    return lines


def probes_part(audit: dict, rows: list[dict]) -> list[str]:
    lines = ["| probes | count | data | probe seed | decode seeds | identities (sha256, 16 hex) | used for |",
             "|---|---|---|---|---|---|---|"]
    for name in ("tuning", "test"):
        p = audit[name]
        lines.append(f"| {name} | {p['probes']} | `{Path(p['source']).name}` | {p['probe_seed']} "
                     f"| {', '.join(map(str, p['decode_seeds']))} | `{p['identities_sha']}` | {p['used_for']} |")
    zsem = next((r for r in rows if r["name"].startswith("audit z_sem fresh probe")), None)
    # The row's note repeats the interval; what else it says (the majority class) is kept.
    extra = [] if zsem is None else [part for part in zsem["note"].split("; ") if not part.startswith("95%")]
    note = f" ({'; '.join(extra)})" if extra else ""
    lines += ["", f"A fresh linear probe trained after the fact on training faces' z_sem reads {audit['attribute']} "
                  f"from the test probes' z_sem with accuracy {interval(audit['zsem_probe'])}{note}. The ceiling's "
                  f"statistics: {audit['ceiling_statistics']}."]
    return lines


def render(data: dict, figures: Path) -> str:
    """The section's markdown; its figures are written under `figures`."""
    details, rows = data["details"], data["rows"]
    audit = details["audit"]
    lines = [
        "## Privacy: attribute leakage, identity and utility",
        "",
        f"Measured by `veil eval` on model `{data['model_version']}` ({details['probes']} probes, "
        f"{details['sampling']['steps']} sampling steps). The leakage audit protects {audit['attribute']} "
        f"(with {', '.join(audit['protected_group'][1:]) or 'no implied attribute'}) on identities no model "
        "saw: each test probe is decoded with the protected value kept and flipped, and each attacker's "
        "accuracy on the ORIGINAL value is the expectation over the mechanism's coin, with 95% intervals. The "
        "randomized-response bound e^eps/(1+e^eps) is what reading the released value gives; the Bayes "
        f"ceiling adds the attributes released unchanged ({', '.join(audit['unchanged'])}). Verdict over "
        f"every bar: {'all met' if data['passed'] else 'some missed (below)'}.",
        "",
        *attacker_figures(audit, figures),
        "### Audit per setting",
        "",
        *audit_table(audit),
        "",
        *sweep_and_examples(details.get("levels"), figures),
        "### Bars",
        "",
        *bars_table(rows),
        "",
        "### Probes",
        "",
        *probes_part(audit, rows),
        "",
    ]
    return "\n".join(lines)
