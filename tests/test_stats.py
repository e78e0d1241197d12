"""benchmarks.stats on known inputs: interval containment, p-values, seed spread, tables, the plot."""

import numpy as np
import pandas as pd
import pytest

from benchmarks import stats


def test_a_clear_paired_difference_has_a_small_p_value_and_an_interval_around_it():
    rng = np.random.default_rng(1)
    b = rng.integers(0, 2, size=(3, 200)).astype(float)
    a = np.maximum(b, rng.random((3, 200)) < 0.4)  # a solves what b solves and about 40% more
    d = stats.paired_difference(a, b)
    assert d["difference"] == pytest.approx((a - b).mean())
    assert 0.15 < d["ci95"][0] < d["difference"] < d["ci95"][1] < 0.4
    assert d["p_value"] < 0.001 and d["n_examples"] == 200 and d["seeds"] == [3, 3]
    assert stats.paired_difference(b, a)["difference"] == pytest.approx(-d["difference"])


def test_identical_methods_have_p_value_one_and_a_zero_interval():
    scores = np.random.default_rng(0).integers(0, 2, size=(3, 120))
    d = stats.paired_difference(scores, scores)
    assert d["difference"] == 0 and d["ci95"] == [0.0, 0.0] and d["p_value"] == 1.0


def test_noise_alone_is_not_significant():
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 2, size=(3, 150)), rng.integers(0, 2, size=(3, 150))
    d = stats.paired_difference(a, b)
    assert d["p_value"] > 0.05 and d["ci95"][0] < 0 < d["ci95"][1]


def test_bootstrap_interval_covers_the_known_mean_and_narrows_with_n():
    small, large = stats.bootstrap_mean_ci([1, 0] * 20), stats.bootstrap_mean_ci([1, 0] * 500)
    assert small[0] < 0.5 < small[1] and large[0] < 0.5 < large[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 3
    assert stats.bootstrap_mean_ci([1, 0] * 20) == small  # seeded


def test_a_deterministic_method_pairs_with_every_seed_and_mismatches_are_refused():
    seed_method, fgo = [1, 0, 0, 0], [[1, 1, 0, 0], [1, 0, 1, 0]]
    assert stats.paired_difference(fgo, seed_method)["difference"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="different numbers of examples"):
        stats.paired_difference([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="cannot pair"):
        stats.paired_difference([[1, 0]] * 2, [[1, 0]] * 3)


def test_seed_summary_is_mean_and_sample_sd_of_per_seed_scores():
    summary = stats.seed_summary([[1, 1], [1, 0], [0, 0]])
    assert summary["mean"] == pytest.approx(0.5) and summary["sd"] == pytest.approx(0.5)
    assert (summary["min"], summary["max"], summary["per_seed"]) == (0.0, 1.0, [1.0, 0.5, 0.0])
    assert stats.seed_summary([1, 0])["sd"] == 0.0


def _run(method, seed, scores, tokens):
    categories = ["a", "b"] * (len(scores) // 2)
    per = {c: float(np.mean([s for s, k in zip(scores, categories, strict=True) if k == c])) for c in "ab"}
    return {"method": method, "seed": seed, "test_scores": scores, "optimize_seconds": 60.0,
            "test": {"score": float(np.mean(scores)), "ci95": [0, 1], "per_category": per},
            "optimizer_side": {"prompt_tokens": tokens, "completion_tokens": 10, "calls": 0 if method == "seed" else 2},
            "task_side_during_optimization": {"calls": 5}}


def results():
    rng = np.random.default_rng(3)
    runs = {"seed/seed0": _run("seed", 0, [0.0] * 100, 0)}
    for s in range(3):
        runs[f"fgo/seed{s}"] = _run("fgo", s, (rng.random(100) < 0.8).astype(float).tolist(), 1000 + s)
        runs[f"gepa/seed{s}"] = _run("gepa", s, (rng.random(100) < 0.5).astype(float).tolist(), 3000)
    return {"runs": runs}


def test_tables_and_plot(tmp_path):
    res = results()
    methods = stats.method_table(res)
    assert list(methods.index) == ["seed", "fgo", "gepa"] and methods.loc["fgo", "seeds"] == 3
    assert methods.loc["fgo", "ci_low"] < methods.loc["fgo", "mean"] < methods.loc["fgo", "ci_high"]
    assert methods.loc["seed", "sd"] == 0 and methods.loc["fgo", "sd"] > 0
    assert list(stats.category_table(res).columns) == ["a", "b"]
    paired = stats.paired_table(res)
    assert list(paired.index) == ["seed", "gepa"] and (paired["p_value"] < 0.01).all()
    assert paired.loc["seed", "difference"] == pytest.approx(methods.loc["fgo", "mean"])
    text = stats.write_report(res, tmp_path)
    assert "Paired differences: fgo minus each method" in text and "gepa" in text
    assert (tmp_path / "score_vs_tokens.png").stat().st_size > 1000 and (tmp_path / "table_paired_fgo.csv").exists()
    assert stats.paired_table(res, reference="miprov2").empty
    assert "headroom" not in methods.columns  # no hand-written row: no headroom to share
    res["runs"]["hand-written/seed0"] = _run("hand-written", 0, [1.0] * 50 + [0.0] * 50, 0)
    shares = stats.method_table(res)["headroom"]
    assert shares["seed"] == 0 and shares["hand-written"] == 1
    assert shares["fgo"] == pytest.approx(methods.loc["fgo", "mean"] / 0.5)
    del res["runs"]["gepa/seed2"]  # an interrupted comparison: gepa has two seeds, fgo three
    assert stats.paired_table(res).loc["gepa", "seeds"] == "2 vs 2"


def test_the_plot_shows_every_method_in_its_legend_and_each_seed_of_a_multi_seed_method():
    res = results()  # seed (1 run), fgo (3 seeds), gepa (3 seeds)
    ax = stats.score_vs_tokens_figure(res).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["seed (1 seed)", "fgo (3 seeds)", "gepa (3 seeds)"]
    assert sorted(len(c.get_offsets()) for c in ax.collections if c.get_offsets().ndim == 2 and
                  len(c.get_offsets()) > 1) == [3, 3]  # one scatter of per-seed points per multi-seed method


def test_the_run_level_test_counts_every_split_of_the_runs_and_needs_two_runs_a_side():
    from benchmarks.stats import run_level_p

    ones, zeros = np.ones((3, 5)), np.zeros((3, 5))
    assert run_level_p(ones, zeros) == 2 / 20  # only the observed split and its mirror are as extreme: 3 runs a side cannot reach 0.05
    assert run_level_p(np.ones((4, 5)), zeros) == 1 / 35  # unequal sides have no mirror split
    assert run_level_p(ones, ones) == 1.0
    assert run_level_p(np.ones((1, 5)), zeros) is None


def test_a_results_file_with_the_reference_alone_gets_its_report_without_a_paired_table(tmp_path):
    res = {"runs": {k: v for k, v in results()["runs"].items() if k.startswith("fgo/")}}
    assert stats.paired_table(res, reference="fgo").empty
    assert "fgo" in stats.write_report(res, tmp_path, "fgo")  # it raised KeyError 'vs' before


def runs_with_means(*means: float, n: int = 50) -> np.ndarray:
    """One row per run, each row's mean the given value (scores of 0/1 would do the same; a constant row is simplest)."""
    return np.array([[m] * n for m in means])


def test_the_run_level_t_interval_counts_the_spread_between_runs_and_can_reach_p_below_0_05_with_3_runs():
    from benchmarks.stats import run_level_interval, run_level_p

    fgo, gepa = runs_with_means(0.33, 0.50, 0.51), runs_with_means(0.15, 0.26, 0.20)
    r = run_level_interval(fgo, gepa)
    diff = 0.4467 - 0.2033
    se = np.sqrt(np.var([0.33, 0.50, 0.51], ddof=1) / 3 + np.var([0.15, 0.26, 0.20], ddof=1) / 3)
    assert r["low"] < diff < r["high"] and r["high"] - r["low"] > 2 * 1.96 * se  # wider than a normal interval: t with df ~3
    assert 0 < r["low"] and r["p"] < 0.05 and run_level_p(fgo, gepa) == 0.1  # the permutation test cannot go below 0.10
    swapped = run_level_interval(gepa, fgo)
    assert np.isclose(swapped["low"], -r["high"]) and np.isclose(swapped["p"], r["p"])
    noisy = run_level_interval(runs_with_means(0.2, 0.5, 0.8), runs_with_means(0.3, 0.4, 0.2))
    assert noisy["low"] < 0 < noisy["high"] and noisy["p"] > 0.05  # a wide spread leaves a mean gap to chance


def test_the_run_level_t_interval_against_a_deterministic_method_and_its_edge_cases():
    from benchmarks.stats import run_level_interval

    fgo, seed = runs_with_means(0.33, 0.50, 0.51), runs_with_means(0.15)
    one_sided = run_level_interval(fgo, seed)
    assert one_sided["low"] < 0.4467 - 0.15 < one_sided["high"] and one_sided["p"] < 0.05
    reverse = run_level_interval(seed, fgo)
    assert np.isclose(reverse["low"], -one_sided["high"]) and np.isclose(reverse["high"], -one_sided["low"])
    assert run_level_interval(seed, runs_with_means(0.3)) is None  # one run a side: nothing to estimate a spread from
    same = run_level_interval(runs_with_means(0.4, 0.4), runs_with_means(0.4, 0.4))
    assert same == {"low": 0.0, "high": 0.0, "p": 1.0}
    res = results()
    table = stats.paired_table(res, reference="fgo")
    assert table.loc["gepa", "runs_ci_low"] < table.loc["gepa", "difference"] < table.loc["gepa", "runs_ci_high"]
    assert table.loc["seed", "p_runs_t"] < 0.05  # the seed has no optimizer: its one run is a constant
    res["runs"] = {k: v for k, v in res["runs"].items() if k not in ("gepa/seed1", "gepa/seed2")}
    assert pd.isna(stats.paired_table(res, reference="fgo").loc["gepa", "p_runs_t"])  # one run of an optimizer: spread unknown
