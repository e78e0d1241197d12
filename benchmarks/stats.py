"""Statistics of a comparison: mean and spread over seeds, paired differences with a bootstrap interval and
a p-value, the tables (pandas) and the score-vs-optimizer-tokens plot (its own matplotlib Figure).

    python -m benchmarks.stats benchmarks/results/<dir>/results.json [--reference fgo]

Scores come as a matrix per method: one row per seed, one column per test example (every method of a
comparison is scored on the same test examples in the same order). A method without randomness (seed,
hand-written) may have one row; it is then paired with every seed of the other method.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmarks.report import by_method, table_rows


def as_matrix(scores: Any) -> np.ndarray:
    """(seeds, examples) float matrix from one list of scores or a list of lists."""
    matrix = np.asarray(scores, dtype=float)
    return matrix[None, :] if matrix.ndim == 1 else matrix


def score_matrix(results: dict[str, Any], method: str, seeds: set[int] | None = None) -> np.ndarray:
    """The per-example test scores of every seed of ``method`` in results.json (or of ``seeds`` only),
    one row per seed, in seed order."""
    runs = sorted(by_method(results)[method], key=lambda run: run["seed"])
    return as_matrix([run["test_scores"] for run in runs if seeds is None or run["seed"] in seeds])


def seed_summary(scores: Any) -> dict[str, Any]:
    """Mean over seeds of each seed's test score, its standard deviation across seeds (ddof=1; 0 for one
    seed), the lowest and highest seed, and each seed's score."""
    per_seed = as_matrix(scores).mean(axis=1)
    return {"mean": float(per_seed.mean()), "sd": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0,
            "min": float(per_seed.min()), "max": float(per_seed.max()), "per_seed": per_seed.tolist()}


def bootstrap_mean_ci(values: Any, resamples: int = 10_000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (numpy Generator seeded with ``seed``)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    return (float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2)))


def paired_difference(a: Any, b: Any, resamples: int = 10_000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Method a minus method b on the same test examples.

    Each example's difference is a's score minus b's, averaged over seeds (seed s of a against seed s of b;
    a one-row matrix is paired with every row of the other). Returns the mean difference, a percentile
    bootstrap 95% interval that resamples test examples (their seeds stay together), and a two-sided
    p-value from a paired sign-flip permutation test: under "no difference" each example's difference is
    as likely to have either sign, so the signs are flipped at random ``resamples`` times and p is the
    share of flips with a mean at least as far from 0 as the observed one, (count + 1) / (resamples + 1).
    """
    a, b = as_matrix(a), as_matrix(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the methods were scored on different numbers of examples: {a.shape[1]} and {b.shape[1]}")
    if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
        raise ValueError(f"cannot pair {a.shape[0]} seeds with {b.shape[0]}")
    diff = (a - b).mean(axis=0)  # broadcasting pairs a one-seed method with every seed of the other
    observed = float(diff.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(resamples, diff.size))
    flipped = np.abs((signs * diff).mean(axis=1))
    p_value = (np.count_nonzero(flipped >= abs(observed) - 1e-12) + 1) / (resamples + 1)
    lo, hi = bootstrap_mean_ci(diff, resamples, level, seed)
    return {"difference": observed, "ci95": [lo, hi], "p_value": float(p_value), "n_examples": int(diff.size),
            "seeds": [a.shape[0], b.shape[0]]}


def run_level_p(a: Any, b: Any) -> float | None:
    """Two-sided exact permutation p-value of the difference between the mean run scores of a and b (each
    run's mean over the test examples): every way of splitting the pooled runs into groups of a's and b's
    sizes is counted; None when either method has a single run (nothing to permute against)."""
    from itertools import combinations

    a_runs, b_runs = as_matrix(a).mean(axis=1), as_matrix(b).mean(axis=1)
    if len(a_runs) < 2 or len(b_runs) < 2:
        return None
    pooled, observed = np.concatenate([a_runs, b_runs]), abs(a_runs.mean() - b_runs.mean())
    total, extreme = 0, 0
    for picked in combinations(range(len(pooled)), len(a_runs)):
        mask = np.zeros(len(pooled), dtype=bool)
        mask[list(picked)] = True
        total += 1
        extreme += abs(pooled[mask].mean() - pooled[~mask].mean()) >= observed - 1e-12
    return float(extreme / total)


def run_level_interval(a: Any, b: Any, level: float = 0.95) -> dict[str, float] | None:
    """Interval and p of a's mean run score minus b's that counts the spread between runs (each run's mean
    over the test examples is one observation): Welch's t (``scipy.stats.ttest_ind``, unequal variances), or a
    one-sample t against the constant when one method has a single run (seed, hand-written); None when
    neither has two runs. Unlike :func:`run_level_p` it assumes the run means are roughly normal, and so can
    reach p < 0.05 with 3 runs a side."""
    from scipy import stats

    a_runs, b_runs = as_matrix(a).mean(axis=1), as_matrix(b).mean(axis=1)
    if len(a_runs) < 2 and len(b_runs) < 2:
        return None
    if np.ptp(a_runs) == 0 and np.ptp(b_runs) == 0:  # no spread on either side: the runs agree exactly
        diff = float(a_runs.mean() - b_runs.mean())
        return {"low": diff, "high": diff, "p": 1.0 if diff == 0 else 0.0}
    if len(a_runs) > 1 and len(b_runs) > 1:
        test = stats.ttest_ind(a_runs, b_runs, equal_var=False)
    else:  # a single run is a constant: the differences of the other side's runs to it
        test = stats.ttest_1samp(a_runs[:, None] - b_runs[None, :], 0.0, axis=None)
    lo, hi = test.confidence_interval(level)
    return {"low": float(lo), "high": float(hi), "p": float(test.pvalue)}


def method_table(results: dict[str, Any]) -> pd.DataFrame:
    """Table 1 style: per method the mean test score over seeds, its spread, a bootstrap 95% interval over
    examples (seed-averaged scores), the optimizer's tokens, calls and minutes (means over seeds), and with a
    seed and a hand-written row the share of the hand-written gain over the seed each method recovers."""
    rows = []
    for row in table_rows(results):
        matrix = score_matrix(results, row["method"])
        summary = seed_summary(matrix)
        lo, hi = bootstrap_mean_ci(matrix.mean(axis=0))
        rows.append({"method": row["method"], "seeds": row["seeds"], "n": matrix.shape[1], "mean": summary["mean"],
                     "sd": summary["sd"], "min": summary["min"], "max": summary["max"], "ci_low": lo, "ci_high": hi,
                     "opt_prompt_tokens": row["opt_prompt_tokens"], "opt_completion_tokens": row["opt_completion_tokens"],
                     "opt_calls": row["opt_calls"], "minutes": row["minutes"]})
    table = pd.DataFrame(rows).set_index("method")
    if {"seed", "hand-written"} <= set(table.index):  # the share of the hand-written instruction's gain each recovers
        gap = table.loc["hand-written", "mean"] - table.loc["seed", "mean"]
        table["headroom"] = (table["mean"] - table.loc["seed", "mean"]) / gap if gap > 0 else np.nan
    return table


def category_table(results: dict[str, Any]) -> pd.DataFrame:
    """Mean over seeds of each method's per-category test score (methods x categories)."""
    frame = pd.DataFrame([{"method": run["method"], **run["test"].get("per_category", {})}
                          for run in results["runs"].values()])
    return frame.groupby("method", sort=False).mean()


def paired_table(results: dict[str, Any], reference: str = "fgo") -> pd.DataFrame:
    """``reference`` minus each other method: paired difference, bootstrap 95% interval, sign-flip p-value
    over examples, and two run-level answers over all runs of both (does the spread of the runs leave the
    difference of their means to chance?): the exact permutation p (``p_runs``) and the t interval and p
    (``runs_ci_low``/``runs_ci_high``/``p_runs_t``; not for an optimizer with one run, whose spread is
    unknown). Two methods with several seeds each are paired on the seeds both have run."""
    methods = by_method(results)
    if reference not in methods:
        return pd.DataFrame()
    rows, ref_all = [], score_matrix(results, reference)
    for other in (m for m in methods if m != reference):
        ref_seeds, other_seeds = ({run["seed"] for run in methods[m]} for m in (reference, other))
        common = ref_seeds & other_seeds if len(ref_seeds) > 1 and len(other_seeds) > 1 else None  # pair seed with seed
        d = paired_difference(score_matrix(results, reference, common), score_matrix(results, other, common))
        other_all = score_matrix(results, other)
        spread_known = all(len(methods[m]) > 1 or not methods[m][0]["optimizer_side"]["calls"] for m in (reference, other))
        runs = (spread_known and run_level_interval(ref_all, other_all)) or {"low": None, "high": None, "p": None}
        rows.append({"vs": other, "difference": d["difference"], "ci_low": d["ci95"][0], "ci_high": d["ci95"][1],
                     "p_value": d["p_value"], "n_examples": d["n_examples"], "seeds": f"{d['seeds'][0]} vs {d['seeds'][1]}",
                     "p_runs": run_level_p(ref_all, other_all),
                     "runs_ci_low": runs["low"], "runs_ci_high": runs["high"], "p_runs_t": runs["p"]})
    return pd.DataFrame(rows).set_index("vs") if rows else pd.DataFrame()  # the reference alone: nothing to pair


def score_vs_tokens_figure(results: dict[str, Any]) -> Figure:
    """Test score against optimizer-side prompt tokens: each run a small point, each method's mean a large one
    (error bar: sd over seeds), methods in the legend."""
    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    runs = by_method(results)
    for row in table_rows(results):
        bar = ax.errorbar(row["opt_prompt_tokens"], row["score"], yerr=row["sd"] or None, fmt="o", capsize=3,
                          label=f"{row['method']} ({row['seeds']} seed{'s' if row['seeds'] > 1 else ''})")
        if row["seeds"] > 1:
            points = [(run["optimizer_side"]["prompt_tokens"], run["test"]["score"]) for run in runs[row["method"]]]
            ax.scatter(*zip(*points, strict=True), s=12, alpha=0.5, color=bar[0].get_color())
    ax.set(xlabel="optimizer-side prompt tokens", ylabel="test score", title="Score against optimizer prompt tokens")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def format_report(results: dict[str, Any], reference: str = "fgo") -> str:
    parts = [("Per method (mean and spread over seeds)", method_table(results)),
             ("Per category (mean over seeds)", category_table(results)),
             (f"Paired differences: {reference} minus each method", paired_table(results, reference))]
    return "\n\n".join(f"{title}\n{table.to_string(float_format=lambda x: f'{x:.3f}')}"
                       for title, table in parts if not table.empty)


def write_report(results: dict[str, Any], out_dir: Path, reference: str = "fgo") -> str:
    """tables.txt, the three tables as CSV, score_vs_tokens.png; returns the text of tables.txt."""
    out_dir = Path(out_dir)
    text = format_report(results, reference)
    (out_dir / "tables.txt").write_text(text + "\n")
    method_table(results).to_csv(out_dir / "table_methods.csv")
    category_table(results).to_csv(out_dir / "table_categories.csv")
    paired_table(results, reference).to_csv(out_dir / f"table_paired_{reference}.csv")
    score_vs_tokens_figure(results).savefig(out_dir / "score_vs_tokens.png", dpi=120)
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="a results.json written by benchmarks.run")
    p.add_argument("--reference", default="fgo", help="the method the paired differences start from")
    args = p.parse_args(argv)
    path = Path(args.results)
    print(write_report(json.loads(path.read_text()), path.parent, args.reference))


if __name__ == "__main__":
    main()
