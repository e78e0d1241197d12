"""The benchmark's table (terminal) and plot (score against optimizer prompt tokens, as in the paper's Fig. 4)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any


def by_method(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in results["runs"].values():
        grouped[run["method"]].append(run)
    return grouped


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for method, runs in by_method(results).items():
        score, sd = _mean_sd([r["test"]["score"] for r in runs])
        rows.append({
            "method": method, "seeds": len(runs), "score": score, "sd": sd,
            "ci95": runs[0]["test"]["ci95"] if len(runs) == 1 else None,
            "opt_prompt_tokens": statistics.fmean(r["optimizer_side"]["prompt_tokens"] for r in runs),
            "opt_completion_tokens": statistics.fmean(r["optimizer_side"]["completion_tokens"] for r in runs),
            "opt_calls": statistics.fmean(r["optimizer_side"]["calls"] for r in runs),
            "task_calls": statistics.fmean(r["task_side_during_optimization"]["calls"] for r in runs),
            "minutes": statistics.fmean(r["optimize_seconds"] for r in runs) / 60,
            "trims": statistics.fmean(r.get("fgo", {}).get("context_trims", 0) for r in runs),
            "per_category": runs[0]["test"].get("per_category", {}),
        })
    return rows


def format_table(results: dict[str, Any]) -> str:
    head = (f"{'method':<18}{'seeds':>5}{'test score':>12}{'sd':>6}{'95% CI':>15}{'opt prompt tok':>15}"
            f"{'opt compl tok':>14}{'opt calls':>10}{'task calls':>11}{'minutes':>9}{'trims':>6}")
    lines = [head, "-" * len(head)]
    for r in table_rows(results):
        ci = f"[{r['ci95'][0]:.2f},{r['ci95'][1]:.2f}]" if r["ci95"] else "-"
        lines.append(f"{r['method']:<18}{r['seeds']:>5}{r['score']:>12.3f}{r['sd']:>6.3f}{ci:>15}"
                     f"{r['opt_prompt_tokens']:>15.0f}{r['opt_completion_tokens']:>14.0f}{r['opt_calls']:>10.0f}"
                     f"{r['task_calls']:>11.0f}{r['minutes']:>9.1f}{r['trims']:>6.0f}")
    categories = sorted({c for r in table_rows(results) for c in r["per_category"]})
    if categories:
        lines += ["", f"{'per category':<18}" + "".join(f"{c[:12]:>13}" for c in categories)]
        for r in table_rows(results):
            lines.append(f"{r['method']:<18}" + "".join(f"{r['per_category'].get(c, 0):>13.2f}" for c in categories))
    return "\n".join(lines)


def print_table(results: dict[str, Any]) -> None:
    print(format_table(results))


def save_plot(results: dict[str, Any], path: Path) -> None:
    from benchmarks.stats import score_vs_tokens_figure  # matplotlib's own Figure: no global backend switch

    score_vs_tokens_figure(results).savefig(path, dpi=120)
