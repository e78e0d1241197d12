"""Compare FGO with its baselines and DSPy's optimizers on one task, one pair of LMs, one budget.

    python -m benchmarks.run --task invoices --methods seed,fgo,all-at-once,batch-wise,bootstrapping \
        --task-lm local:qwen0.5b --optimizer-lm local:qwen1.5b --train 24 --val 8 --test 40 --seeds 0

LM names are litellm model strings (``openai/gpt-4o-mini``...) or ``local:<alias>`` for the embedded
local models (``python -m dspy_fgo.local setup`` first). Every method gets the same data and LMs; the
task LM runs at temperature 0. Results go to ``<out>/results.json`` after every method (a finished
method is not rerun), with a table in the terminal, the statistics of ``benchmarks.stats`` (mean and spread
over seeds, per category, paired differences of FGO against each method) in ``<out>/tables.txt`` and
CSVs, and ``<out>/score_vs_tokens.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from benchmarks.methods import METHODS, MethodContext, fgo_variant  # noqa: E402
from benchmarks.report import print_table  # noqa: E402
from benchmarks.scoring import score_program, summarize_scores  # noqa: E402
from benchmarks.stats import write_report  # noqa: E402
from benchmarks.tasks.registry import load_task  # noqa: E402

logger = logging.getLogger("benchmarks.run")


class UsageByModel:
    """A ``dspy.settings.usage_tracker`` that splits every LM call into task-side and optimizer-side by
    the calling LM's model name (DSPy reports every call here, copies of LMs included)."""

    def __init__(self, task_model: str):
        self.task_model = task_model
        self.lock = threading.Lock()
        self.usage = {side: {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0} for side in ("task", "optimizer")}

    def add_usage(self, lm: str, usage: dict[str, Any]) -> None:
        side = "task" if lm == self.task_model else "optimizer"
        with self.lock:
            self.usage[side]["calls"] += 1
            self.usage[side]["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
            self.usage[side]["completion_tokens"] += int(usage.get("completion_tokens") or 0)

    def __deepcopy__(self, memo):
        return self


def resolve_lms(task_name: str, optimizer_name: str, n_ctx: int, task_temperature: float = 0.0):
    """(task LM, at temperature 0 unless told otherwise, optimizer LM, local server or None)."""
    local = [name.split(":", 1)[1] for name in (task_name, optimizer_name) if name.startswith("local:")]
    server = None
    if local:
        from dspy_fgo.local import LocalServer

        server = LocalServer(models=tuple(dict.fromkeys(local)), n_ctx=n_ctx)
        server.start()

    def make(name: str, **kw):
        if name.startswith("local:"):
            return server.lm(name.split(":", 1)[1], **kw)
        return dspy.LM(name, **kw)

    task_lm = make(task_name, temperature=task_temperature, max_tokens=512)
    # No DSPy cache on the optimizer side: DSPy does not report cache hits to the usage tracker, so a method
    # run after another would get the critiques of shared trajectories for free and look cheaper.
    optimizer_lm = make(optimizer_name, temperature=0.7, max_tokens=1024, cache=False)
    if optimizer_lm.model == task_lm.model:
        # One model in both roles: a distinct name keeps their usage apart (an OpenAI-compatible llama.cpp
        # server answers an unknown model name with its default model).
        optimizer_lm = optimizer_lm.copy(model=optimizer_lm.model + "-optimizer")
    return task_lm, optimizer_lm, server


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("dspy", "litellm", "dspy-fgo", "llama_cpp_python", "gepa", "optuna", "scikit-learn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def missing_dependencies(methods: list[str]) -> list[str]:
    """What the run would fail on hours in: MIPROv2 imports optuna only when it starts its trials, and the
    plot needs matplotlib after every method has run."""
    from importlib.util import find_spec

    needs = {"matplotlib": "the score-vs-tokens plot"}
    if "miprov2" in methods:
        needs["optuna"] = "MIPROv2's trials"
    return [f"{module} (for {why})" for module, why in needs.items() if find_spec(module) is None]


def method_factory(name: str):
    """A method of ``METHODS`` or a variant (``fgo+rules+tie``, ``all-at-once+rules+tie``), or None."""
    return METHODS.get(name) or fgo_variant(name)


def refused_methods(names: list[str]) -> list[str]:
    """Why each of ``names`` would fail when its turn comes: an unknown name, or options its optimizer refuses."""
    problems = []
    for name in names:
        try:
            if method_factory(name) is None:
                problems.append(f"{name}: unknown method (known: {', '.join(sorted(METHODS))} or <head>+<switch>...)")
        except (ValueError, TypeError) as error:
            problems.append(f"{name}: {error}")
    return problems


def run_method(name: str, ctx: MethodContext, test, metric, out_dir: Path) -> dict[str, Any]:
    tracker = UsageByModel(ctx.task_lm.model)
    started = time.perf_counter()
    with dspy.context(lm=ctx.task_lm, usage_tracker=tracker):
        program = method_factory(name)(ctx)
    seconds = time.perf_counter() - started
    scores, predictions = score_program(program, test, metric, ctx.task_lm, num_threads=ctx.num_threads)
    run: dict[str, Any] = {
        "method": name, "seed": ctx.seed, "optimize_seconds": seconds,
        "optimizer_side": tracker.usage["optimizer"], "task_side_during_optimization": tracker.usage["task"],
        "test": summarize_scores(scores, test), "test_scores": scores, "test_predictions": predictions,
        "instructions": {path: p.signature.instructions for path, p in program.named_predictors()},
        "demos": sum(len(p.demos) for p in program.predictors()),
    }
    result = getattr(program, "fgo_result", None)
    if result is not None:
        run["fgo"] = {"final_choice": result.final_choice, "reason": result.reason, "errors": len(result.errors),
                      "context_trims": result.accounting.get("context_trims", 0), "val_scores": result.val_scores,
                      "roles": result.accounting.get("roles", {})}
        result.to_json(out_dir / f"{name}-seed{ctx.seed}.fgo.json")
    program.save(str(out_dir / f"{name}-seed{ctx.seed}.program.json"))
    return run


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="invoices", help="invoices, household, tickets, prices, tracking, appointments, payments, bookings or stock")
    p.add_argument("--methods", default="seed,fgo,all-at-once,batch-wise,bootstrapping")
    p.add_argument("--task-lm", default="local:qwen0.5b")
    p.add_argument("--optimizer-lm", default="local:qwen1.5b")
    p.add_argument("--task-temperature", type=float, default=0.0,
                   help="task LM temperature (0 for comparable scores; DSPy's cache makes reruns repeat answers)")
    p.add_argument("--train", type=int, default=24)
    p.add_argument("--val", type=int, default=8)
    p.add_argument("--test", type=int, default=40)
    p.add_argument("--seeds", default="0", help="comma-separated optimizer seeds (the data split stays fixed)")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--profile", default="small", help="task size profile (invoices: small or paper)")
    p.add_argument("--program", default="predict", help="invoices: predict, cot, predict-json or cot-json; "
                   "tickets/prices/tracking: predict or predict-json; stock: react or react-json")
    p.add_argument("--metric", default=None, help="household: won (default) or progress (sub-goals reached)")
    p.add_argument("--feedback", default=None, choices=("rule", "plain"),
                   help="short tasks: the feedback metric (GEPA's and FGO's) cites the category's rule when wrong "
                        "(rule, default) or says only expected against got (plain)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--auto", default="light", help="budget of MIPROv2 and GEPA")
    p.add_argument("--max-metric-calls", type=int, default=None,
                   help="equal budget: every optimizer gets this many metric calls (FGO and its baselines plan "
                        "their steps to fit; overrides --epochs and --auto)")
    p.add_argument("--num-threads", type=int, default=4,
                   help="threads for optimizing and scoring (the local server has 4 slots per model; each slot "
                        "keeps its own prompt-prefix cache)")
    p.add_argument("--n-ctx", type=int, default=8192, help="context of the local models")
    p.add_argument("--reference", default="fgo", help="the method the paired differences start from "
                   "(e.g. an FGO variant such as fgo+rules+tie+raw)")
    p.add_argument("--fork-subsets-of", default=None, metavar="METHOD",
                   help="start each FGO run from METHOD's subsets at the same seed (its checkpoints in --fork-dir) and "
                        "redo only the merges and the final choice: a paired test of merge-stage settings "
                        "(prune, race, pick4) on the same subsets")
    p.add_argument("--fork-dir", default=None, help="the results folder holding METHOD's checkpoints (default --out;"
                   " a separate --out keeps forked runs apart from independent runs of the same method)")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results/<task>-<lms>)")
    return p.parse_args(argv)


def main(argv=None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    refused = refused_methods(args.methods.split(","))
    if refused:
        sys.exit("Refused before any method runs:\n  " + "\n  ".join(refused))
    missing = missing_dependencies(args.methods.split(","))
    if missing:
        sys.exit("Missing before any method runs: " + "; ".join(missing) + ' (pip install -e ".[bench]")')
    task = load_task_of(args)
    tag = f"{args.task}-{args.task_lm}-{args.optimizer_lm}".replace(":", "_").replace("/", "_")
    out_dir = Path(args.out or Path("benchmarks/results") / tag)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": {}}
    results.update(command="python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:]),
                   args=vars(args), versions=versions(), lms={"task": args.task_lm, "optimizer": args.optimizer_lm})
    task_lm, optimizer_lm, server = resolve_lms(args.task_lm, args.optimizer_lm, args.n_ctx, args.task_temperature)
    try:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for name in args.methods.split(","):
                key = f"{name}/seed{seed}"
                if key in results["runs"]:
                    logger.info("%s already done: skipped", key)
                    continue
                log_dir = out_dir / f"{name}-seed{seed}.checkpoints"
                forked = (fork_from(Path(args.fork_dir or out_dir), args.fork_subsets_of, seed, log_dir)
                          if args.fork_subsets_of else None)
                ctx = method_context(task, args, task_lm, optimizer_lm, seed, str(log_dir))
                logger.info("=== %s ===", key)
                run = run_method(name, ctx, task.test, task.metric, out_dir)
                if forked is not None:
                    add_forked_usage(run, forked, args.fork_subsets_of)
                results["runs"][key] = run | {
                    "command": results["command"], "train": len(task.train), "val": len(task.val)}
                _write_atomic(results_path, results)
        print_table(results)
        if task.task_table is not None:
            table = task.task_table(results)
            print(table)
            (out_dir / "task_table.txt").write_text(table + "\n")
        print(write_report(results, out_dir, args.reference))  # tables.txt, CSVs, score_vs_tokens.png
    finally:
        if server is not None:
            server.stop()
    return results


def load_task_of(args: argparse.Namespace):
    """The task (data split, program, metrics) ``args`` name."""
    options = {"metric": args.metric} if args.metric else {}
    if args.feedback:
        options["feedback"] = args.feedback
    return load_task(args.task, train=args.train, val=args.val, test=args.test, seed=args.data_seed,
                     profile=args.profile, program=args.program, **options)


def method_context(task, args: argparse.Namespace, task_lm, optimizer_lm, seed: int,
                   log_dir: str | None) -> MethodContext:
    """What a method gets for ``task`` at ``seed``: the same data, LMs and budget for every method."""
    return MethodContext(task.program_factory(), task.train, task.val or None, task.metric, task.feedback_metric,
                         task_lm, optimizer_lm, seed, epochs=args.epochs, num_threads=args.num_threads,
                         auto=args.auto, hand_written=task.hand_written_program(),
                         max_metric_calls=args.max_metric_calls, log_dir=log_dir)


def fork_from(source_dir: Path, source: str, seed: int, log_dir: Path) -> dict[str, Any]:
    """Start ``log_dir`` from the subsets of method ``source`` at ``seed`` in the results folder ``source_dir``
    (``dspy_fgo.fork_subsets``) unless an interrupted fork already did; the pre-merge usage carried over."""
    from dspy_fgo.persist import fork_subsets, write_json_atomic

    if not (log_dir / "budget.json").exists():
        fork_subsets(source_dir / f"{source}-seed{seed}.checkpoints", log_dir)
        write_json_atomic(log_dir / "forked.json", json.loads((log_dir / "budget.json").read_text()))
    return json.loads((log_dir / "forked.json").read_text())


def add_forked_usage(run: dict[str, Any], forked: dict[str, Any], source: str) -> None:
    """Count the subsets' LM usage (spent by ``source``'s run, carried over by the fork) in ``run``'s totals;
    ``optimize_seconds`` stays this run's own (the merges, the final choice)."""
    task = forked["roles"].get("task", {})
    for side, usage in (("optimizer_side", forked["optimizer_side"]), ("task_side_during_optimization", task)):
        for key in ("calls", "prompt_tokens", "completion_tokens"):
            run[side][key] += int(usage.get(key, 0))
    run["forked_subsets_of"] = source


def _write_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


if __name__ == "__main__":
    main()
