"""The report's section on the simulated data owner (veil_tools.owner's JSON): rounds to
acceptance and eps charged per controller setting, as a table and one figure."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path

from veil_tools.report.figures import new_figure, save_png

FIGURE = "owner-rounds-eps.png"


def setting_name(setting: dict) -> str:
    return f"MORE x{setting['more_factor']:g}, start level {setting['start_level']}"


def interval95(values: list[float]) -> float:
    """Half-width of the normal-approximation 95% interval of the mean (nan below 2 values)."""
    if len(values) < 2:
        return float("nan")
    return 1.96 * statistics.stdev(values) / math.sqrt(len(values))


def summarize(setting: dict) -> dict:
    probes = setting["probes"]
    accepted = [p for p in probes if p["accepted"]]
    rounds = [p["rounds"] for p in accepted]
    charged = [p["charged_epsilon"] for p in accepted]
    final = [p["final_attribute_epsilon"] for p in accepted]
    return {"name": setting_name(setting), "probes": len(probes), "accepted": len(accepted),
            "rounds": rounds, "charged": charged,
            "rounds_mean": statistics.fmean(rounds) if rounds else float("nan"),
            "rounds_interval": interval95(rounds),
            "charged_mean": statistics.fmean(charged) if charged else float("nan"),
            "charged_median": statistics.median(charged) if charged else float("nan"),
            "final_mean": statistics.fmean(final) if final else float("nan"),
            "distribution": Counter(rounds)}


def plot(summaries: list[dict], max_rounds: int, path: Path) -> None:
    figure, (left, right) = new_figure(11, 4, columns=2)
    width = 0.8 / len(summaries)
    for k, s in enumerate(summaries):
        counts = [s["distribution"].get(r, 0) for r in range(1, max_rounds + 1)]
        left.bar([r + (k - (len(summaries) - 1) / 2) * width for r in range(1, max_rounds + 1)],
                 counts, width=width, label=s["name"])
    left.set_xlabel("rounds to acceptance")
    left.set_ylabel("probes")
    left.set_xticks(range(1, max_rounds + 1))
    left.legend(fontsize=8)
    left.set_title("Rounds the owner needed")
    right.boxplot([s["charged"] or [float("nan")] for s in summaries], showmeans=True)
    right.set_xticks(range(1, len(summaries) + 1), [s["name"].replace(", ", "\n") for s in summaries],
                     fontsize=8)
    right.set_ylabel("eps charged at release")
    right.set_title("Eps charged per accepted probe (triangle: mean)")
    save_png(figure, path)


def render(data: dict, figures: Path) -> str:
    """The section's markdown; its figure is written under `figures`."""
    summaries = [summarize(s) for s in data["settings"]]
    policy, run = data["policy"], data["run"]
    plot(summaries, policy["max_rounds"], figures / FIGURE)
    lines = [
        "## Simulated data owner",
        "",
        f"{run['probes']} probe faces (held-out synthetic identities) each went through a real "
        f"gateway session protecting {policy['protect']} ({run['candidates']} candidates per round, "
        f"{run['sampling_steps']} sampling steps). The owner judges each round with its own attacker "
        f"(logistic regression on pixels, not the attacker the privacy sections grade with) and "
        f"accepts when the attacker's expected accuracy on {policy['protect']} over the round is at "
        f"most {policy['privacy_target']:g} and a candidate keeps at least "
        f"{policy['utility_floor']:.0%} of the other attributes; otherwise it asks for more or less "
        f"privacy, for at most {policy['max_rounds']} rounds.",
        "",
        "Rounds and eps are over the accepted probes; a probe not accepted within the limit counts "
        "only in the accepted column. The eps charged is the ledger's charge for the release (the "
        "protected attribute and identity together); all settings see the same probes and seeds.",
        "",
        f"![rounds to acceptance and eps charged per controller setting](figures/{FIGURE})",
        "",
        "| controller setting | accepted | rounds (mean ± 95%) | rounds: count of probes | eps charged (mean / median) "
        f"| final {policy['protect']} eps (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        histogram = ", ".join(f"{r}: {n}" for r, n in sorted(s["distribution"].items()))
        lines.append(f"| {s['name']} | {s['accepted']}/{s['probes']} | {s['rounds_mean']:.2f} ± {s['rounds_interval']:.2f} "
                     f"| {histogram} "
                     f"| {s['charged_mean']:.2f} / {s['charged_median']:.2f} | {s['final_mean']:.2f} |")
    accuracy = ", ".join(f"{a} {v:.2f}" for a, v in sorted(data["attacker_train_accuracy"].items()))
    lines += ["", f"Owner's attacker, training accuracy: {accuracy}.", ""]
    return "\n".join(lines)
