"""Scale benchmark: optimizer cost and time against trainset size, on a simulated LM (not quality).

    python -m benchmarks.scale --sizes 48,480,4800 --latency 0.2 --size-latency 4800=0.05 --concurrency 16 \
        --methods fgo,all-at-once,batch-wise,bootstrapping,gepa,miprov2
    python -m benchmarks.scale --sizes 4800 --methods fgo --latency 0.2 --size-latency '' --tag @0.2s

A :class:`benchmarks.simulated_lm.SimulatedServer` stands in for the LLM deployment: every call waits
for one of ``--concurrency`` slots, sleeps ``--latency`` seconds, and answers canned text that parses
for any signature; prompts are counted with litellm's tokenizer and a prompt over ``--window`` tokens
fails like a real context-window error. The task model answers a synthetic log-classification task
(log excerpts of ~450 tokens from 6 services, 6 root-cause labels) correctly about 30% of the time,
deterministically by a hash of its prompt, so there is always something to critique.

Every (method, size) runs in its own subprocess (peak memory is the child's ``ru_maxrss``; a crash or a
timeout is contained and recorded) and is written to ``<out>/scale.json`` as soon as it ends; finished
pairs are skipped on the next invocation, so runs at other sizes or latencies can be added later. Each
run records its exact command. ``<out>/scale.png`` plots optimizer prompt tokens and wall time against
trainset size, and the FGO / all-at-once token ratio.

Per run: optimizer-side and task-side calls and tokens, context overflows (seen by the simulated LM) and
trims (counted by dspy_fgo), wall time, the lower bound on wall time and their ratio, CPU seconds, and
peak RSS. The bound is ``max(critical path x latency, total calls x latency / concurrency)``: no schedule
can beat either. The critical path (the longest chain of LM calls that depend on each other) is
derived from each run's record, counting only true data dependencies:

- FGO family (from ``program.fgo_result``): per subset and step, evaluate the batch (when not reused),
  critique (when a run failed), summarize (when the feedback did not fit; see
  :func:`textgrad_critical_path` for how trims are attributed soundly), propose, re-evaluate; then one
  merge call plus one back-test per level of the merge tree along the longest leaf-to-root path; then
  the optimized program's valset check (the seed's check depends on nothing and is not counted).
- GEPA: the initial valset evaluation, then per reflection call its minibatch evaluation, the call,
  and the new candidate's minibatch evaluation (each iteration depends on the last), plus each later
  full valset evaluation.
- MIPROv2: the chain of dataset-summary calls (each reads the previous observations), the summary,
  the program and module descriptions, one instruction-proposal round, then one round per trial
  (each TPE trial depends on the previous scores) and per full evaluation. Demo bootstrapping is not
  counted (it could overlap the proposals), so this bound is loose.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import random
import re
import resource
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from benchmarks.simulated_lm import SimulatedLM, SimulatedServer, _hash  # noqa: E402

logger = logging.getLogger("benchmarks.scale")

DEFAULT_OUT = Path("benchmarks/results/scale")
METHOD_NAMES = ("fgo", "all-at-once", "batch-wise", "bootstrapping", "gepa", "miprov2")
TEXTGRAD_METHODS = ("fgo", "all-at-once", "batch-wise", "bootstrapping")
TASK_MODEL, OPTIMIZER_MODEL = "simulated/task", "simulated/optimizer"

# ----- the synthetic task ------------------------------------------------------------------------------

SERVICES = ("auth", "billing", "search", "storage", "gateway", "scheduler")  # the example's category
LABELS = ("timeout", "out_of_memory", "permission", "configuration", "dependency", "disk")
DECISIVE = {  # the one line that tells the label, and the phrase that identifies it
    "timeout": ("ERROR", "deadline exceeded after {ms}ms waiting for {peer} (attempt {k}/3)"),
    "out_of_memory": ("ERROR", "OOMKilled: container {svc}-worker-{k} hit its memory limit of {mi}Mi"),
    "permission": ("ERROR", "403 Forbidden: service account {svc}-sa lacks permission {perm} on {res}"),
    "configuration": ("ERROR", "invalid configuration: key '{key}' missing in /etc/{svc}/{svc}.yaml"),
    "dependency": ("ERROR", "upstream {peer} returned 503 Service Unavailable for {path}"),
    "disk": ("ERROR", "No space left on device /dev/{dev} (volume quota {gb}G) while writing {path}"),
}
PHRASES = {"timeout": "deadline exceeded", "out_of_memory": "OOMKilled", "permission": "403 Forbidden",
           "configuration": "invalid configuration", "dependency": "returned 503", "disk": "No space left on device"}
FILLERS = (
    ("INFO", "GET {path} 200 in {ms}ms user={user} request_id={rid}"),
    ("INFO", "POST {path} 201 in {ms}ms user={user} request_id={rid}"),
    ("DEBUG", "cache lookup key={rid} hit={hit} ttl={k}s shard={k}"),
    ("INFO", "connection pool {peer}: active={k} idle={ms} max=64"),
    ("WARN", "slow query on table {res} took {ms}ms (threshold 250ms) plan=index_scan"),
    ("INFO", "scheduled job {svc}-sync-{k} started by cron trigger at offset {ms}ms"),
    ("WARN", "retrying call to {peer} after transient error, backoff {ms}ms request_id={rid}"),
    ("INFO", "health check ok: cpu={k}% mem={mi}Mi goroutines={ms} uptime={gb}h"),
    ("DEBUG", "feature flag {key}={hit} evaluated for user={user} in {k}us"),
    ("INFO", "published {k} events to topic {svc}.events partition={k} offset={rid}"),
)
PEERS = ("postgres-primary", "redis-cache", "kafka-broker-2", "payments-api", "search-index", "object-store")
PERMS = ("storage.objects.get", "billing.invoices.write", "iam.roles.read", "queue.messages.publish")
KEYS = ("database.url", "auth.jwks_uri", "limits.max_batch", "tls.cert_path", "index.shards")
INSTRUCTIONS = ("Classify the log excerpt by the root cause of its failure. Answer with one label: "
                + ", ".join(LABELS) + ".")


def make_document(rng: random.Random, service: str, label: str) -> str:
    """A log excerpt of ~450 tokens: a header, 9-13 routine lines, and one decisive error line."""

    def fill(template: str) -> str:
        return template.format(
            ms=rng.randint(3, 30000), peer=rng.choice(PEERS), k=rng.randint(1, 9), svc=service,
            mi=rng.choice((256, 512, 1024, 2048)), perm=rng.choice(PERMS), res=rng.choice(("orders", "users", "ledger")),
            key=rng.choice(KEYS), path=rng.choice(("/v1/items", "/v2/orders", "/healthz", "/v1/export", "/login")),
            dev=rng.choice(("sda1", "nvme0n1p2", "xvdf")), gb=rng.randint(10, 500), user=f"u{rng.randint(1000, 99999)}",
            rid=f"{rng.getrandbits(48):012x}", hit=rng.choice(("true", "false")),
        )

    t = rng.randint(0, 80000)
    lines = [f"# service={service} region={rng.choice(('eu-west-1', 'us-east-2', 'ap-south-1'))} "
             f"host={service}-{rng.randint(1, 40):02d}.prod build={rng.getrandbits(28):07x}"]
    count = rng.randint(9, 13)
    decisive_at = rng.randint(count // 2, count - 1)
    for i in range(count):
        t += rng.randint(1, 9)
        stamp = f"2024-05-{1 + t // 86400 % 28:02d}T{t // 3600 % 24:02d}:{t // 60 % 60:02d}:{t % 60:02d}Z"
        level, template = DECISIVE[label] if i == decisive_at else rng.choice(FILLERS)
        lines.append(f"{stamp} {level:<5} [{service}] {fill(template)}")
    return "\n".join(lines)


def true_label(document: str) -> str | None:
    return next((label for label, phrase in PHRASES.items() if phrase in document), None)


def make_examples(n: int, seed: int = 0) -> list[dspy.Example]:
    """``n`` examples balanced over the 6 services; the label leans on the service (as root causes do)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        service = SERVICES[i % len(SERVICES)]
        weights = [3 if j == i % len(SERVICES) else 1 for j in range(len(LABELS))]
        label = rng.choices(LABELS, weights)[0]
        out.append(dspy.Example(document=make_document(rng, service, label), label=label,
                                category=service).with_inputs("document"))
    return out


def task_responder(accuracy: float = 0.3):
    """The task model: right ``accuracy`` of the time, by a hash of its instructions and input."""

    def respond(request) -> dict[str, Any] | None:
        if "label" not in request.output_names:
            return None
        document = request.fields.get("document", "")
        gold = true_label(document)
        h = _hash(request.system, document)
        if gold is not None and h % 1000 < accuracy * 1000:
            return {"label": gold}
        wrong = [lab for lab in LABELS if lab != gold]
        return {"label": wrong[h % len(wrong)]}

    return respond


def metric(example, prediction, trace=None) -> float:
    return float(str(getattr(prediction, "label", "")).strip().lower() == example.label)


def feedback_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    score = metric(gold, pred)
    said = str(getattr(pred, "label", "")).strip()
    feedback = "Correct." if score else f"Expected label '{gold.label}' but the program answered '{said}'."
    return dspy.Prediction(score=score, feedback=feedback)


def make_program() -> dspy.Module:
    return dspy.Predict(dspy.Signature("document -> label", INSTRUCTIONS))


# ----- one run ----------------------------------------------------------------------------------------------


def build_optimizer(method: str, args: argparse.Namespace, task_lm, optimizer_lm):
    from dspy_fgo import FGO, AllAtOnce, BatchWise, Bootstrapping

    budget = {"auto": args.auto} if args.auto else {"epochs": args.epochs}
    common = dict(metric=metric, optimizer_lm=optimizer_lm, task_lm=task_lm, num_threads=args.num_threads,
                  context_window=args.window, seed=0, **budget)
    if method == "fgo":
        return FGO(partition="category", subset_size=args.subset_size, merge_threshold=args.merge_threshold, **common)
    if method == "all-at-once":
        return AllAtOnce(**common)
    if method == "batch-wise":
        return BatchWise(batch_size=args.batch_size, **common)
    if method == "bootstrapping":
        return Bootstrapping(batch_size=args.batch_size, **common)
    if method == "gepa":
        from dspy.teleprompt import GEPA

        gepa_budget = {"auto": args.auto} if args.auto else {"max_metric_calls": args.gepa_metric_calls}
        return GEPA(metric=feedback_metric, reflection_lm=optimizer_lm, num_threads=args.num_threads, seed=0,
                    track_stats=True, **gepa_budget)
    if method == "miprov2":
        from dspy.teleprompt import MIPROv2

        return MIPROv2(metric=metric, prompt_model=optimizer_lm, task_model=task_lm, auto="light",
                       num_threads=args.num_threads, seed=0, verbose=False)
    raise ValueError(f"Unknown method {method!r}; known: {METHOD_NAMES}")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(method: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run one method at one trainset size in this process and return its record."""
    from benchmarks.run import UsageByModel

    trainset = make_examples(n, seed=args.data_seed)
    valset = make_examples(args.val, seed=args.data_seed + 10_000)
    server = SimulatedServer(latency=args.latency, concurrency=args.concurrency, window=args.window)
    task_lm = SimulatedLM(TASK_MODEL, server=server, responder=task_responder(args.accuracy), max_tokens=512)
    optimizer_lm = SimulatedLM(OPTIMIZER_MODEL, server=server, max_tokens=1000, temperature=0.7)
    optimizer = build_optimizer(method, args, task_lm, optimizer_lm)
    tracker = UsageByModel(TASK_MODEL)
    record: dict[str, Any] = {
        "method": method, "n": n, "val": args.val, "latency": args.latency, "concurrency": args.concurrency,
        "num_threads": args.num_threads, "window": args.window, "epochs": args.epochs,
        "input_tokens_per_example": round(sum(_tokens(ex.document) for ex in trainset[:48]) / min(n, 48), 1),
    }
    rss_before, cpu_before = _rss_mb(), _cpu_seconds()
    server.started = started = time.perf_counter()
    program, error = None, None
    try:
        with dspy.context(lm=task_lm, usage_tracker=tracker):
            program = optimizer.compile(make_program(), trainset=trainset, valset=valset)
    except Exception as exc:  # recorded, not raised: the usage so far is still worth reporting
        error = f"{type(exc).__name__}: {exc}"[:2000]
        record["traceback"] = traceback.format_exc()[-4000:]
    wall = time.perf_counter() - started
    record.update(wall_seconds=wall, cpu_seconds=_cpu_seconds() - cpu_before, error=error,
                  rss_before_mb=rss_before, peak_rss_mb=_rss_mb())
    record["peak_rss_growth_mb"] = record["peak_rss_mb"] - rss_before
    record["tracker"] = tracker.usage
    record["server"] = server.summary()
    record["overflows"] = server.overflows

    fgo = getattr(program, "fgo_result", None) if program is not None else None
    if fgo is not None:
        acc = fgo.accounting
        side = acc["optimizer_side"]
        record["optimizer_side"] = {k: side[k] for k in ("calls", "prompt_tokens", "completion_tokens")}
        record["context_trims"] = acc.get("context_trims", 0)
        record["roles"] = {r: {k: u[k] for k in ("calls", "prompt_tokens", "completion_tokens")}
                           for r, u in acc["roles"].items()}
        record["fgo"] = {"subsets": len(fgo.subsets), "subset_sizes": sorted({len(s.indices) for s in fgo.subsets}),
                         "merge_nodes": len(fgo.merge_tree), "merge_depth": fgo.merge_root.depth() if fgo.merge_root else 0,
                         "final_choice": fgo.final_choice, "errors": len(fgo.errors),
                         "error_stages": sorted({e["stage"] for e in fgo.errors}), "stopped": fgo.stopped,
                         "merge_backtest_task_calls": sum(len(node.indices) for node in fgo.merge_root.walk()
                                                          if not node.is_leaf) if fgo.merge_root else 0}
        record["critical_path"] = textgrad_critical_path(fgo, optimizer)
    else:
        record["optimizer_side"] = dict(tracker.usage["optimizer"])
        record["context_trims"] = None  # DSPy's optimizers do not trim; overflows are what they hit
        if method == "gepa":
            record["critical_path"] = gepa_critical_path(program, server)
        elif method == "miprov2":
            record["critical_path"] = mipro_critical_path(program, server)
    record["task_side"] = dict(tracker.usage["task"])
    record.update(timing(record, server, started, started + wall))
    return record


def _tokens(text: str) -> int:
    from dspy_fgo.budget import count_tokens

    return count_tokens(text)


def timing(record: dict[str, Any], server: SimulatedServer, start: float, end: float) -> dict[str, Any]:
    """The lower bound on wall time and what the call log says about the run's concurrency."""
    latency, concurrency = record["latency"], record["concurrency"]
    calls = server.summary()["total_calls"]
    cp_units = (record.get("critical_path") or {}).get("units")
    cp_seconds = cp_units * latency if cp_units is not None else None
    throughput_seconds = calls * latency / concurrency if concurrency else 0.0
    bound = max(cp_seconds or 0.0, throughput_seconds)
    intervals = sorted((r.start, r.end) for r in server.log if not r.overflow and r.end > r.start)
    busy, cur_start, cur_end = 0.0, None, None
    for s, e in intervals:  # time with at least one call in flight
        if cur_end is None or s > cur_end:
            if cur_end is not None:
                busy += cur_end - cur_start
            cur_start, cur_end = s, e
        else:
            cur_end = max(cur_end, e)
    if cur_end is not None:
        busy += cur_end - cur_start
    wall = end - start
    return {
        "total_calls": calls, "critical_path_seconds": cp_seconds, "throughput_bound_seconds": throughput_seconds,
        "lower_bound_seconds": bound, "wall_over_bound": wall / bound if bound > 0 else None,
        "wall_over_critical_path": wall / cp_seconds if cp_seconds else None,
        "busy_seconds": busy, "idle_seconds": max(0.0, wall - busy),
        "mean_in_flight": sum(e - s for s, e in intervals) / wall if wall > 0 else None,
        "peak_in_flight": server.peak_in_flight,
    }


# ----- critical paths ---------------------------------------------------------------------------------------


def _step_units(steps, keep_best: bool, critique_successes: bool) -> list[int]:
    """LM-call rounds of each step of ``optimize_on_batches`` as dspy_fgo runs it (see optimize.py):
    evaluate when the batch's trajectories are not reused, critique when a run failed, propose, and
    re-evaluate a changed candidate when keeping the best."""
    units, reuse = [], False
    for k, step in enumerate(steps):
        u = 0 if reuse else 1
        u += 1 if (critique_successes or step.score_before < 1.0) else 0
        u += 1  # propose (one call per component, in parallel)
        u += 1 if (keep_best and step.changed) else 0
        units.append(u)
        same_next = k + 1 < len(steps) and list(steps[k + 1].indices) == list(step.indices)
        reuse = keep_best and same_next
    return units


def textgrad_critical_path(result, optimizer) -> dict[str, Any]:
    """Critical path in LM-call rounds of a dspy_fgo run (FGO or a schedule baseline), from its record.

    Summaries: a step whose feedback did not fit the window adds one round of summarize calls (under
    the "summarize" policy; "trim" adds no call). The record counts trims per run, not per step: a
    single chain (the baselines) takes them all; for FGO, if every step trimmed each subset gets one
    round per step, else some subset trimmed at least ceil(trims / subsets) times, and the bound uses
    the shortest subset chain plus that, which can only under-count.
    """
    keep_best = result.method in ("fgo", "all-at-once")
    summarize = getattr(getattr(optimizer, "overflow", None), "mode", "summarize") == "summarize"
    trims = int(result.accounting.get("context_trims", 0)) if summarize else 0
    crit = bool(getattr(optimizer, "critique_successes", False))
    subset_units = {s.subset_id: sum(_step_units(s.steps, keep_best, crit)) for s in result.subsets}
    total_steps = sum(len(s.steps) for s in result.subsets)
    steps_per_subset = {s.subset_id: len(s.steps) for s in result.subsets}
    all_trimmed = trims > 0 and trims == total_steps
    if all_trimmed or len(result.subsets) == 1:
        subset_units = {k: v + (steps_per_subset[k] if all_trimmed else trims) for k, v in subset_units.items()}
        spread = 0
    else:
        spread = math.ceil(trims / max(1, len(result.subsets)))

    def merge_cost(node) -> int:
        names = set().union(*(c.candidate.keys() for c in node.children))
        differs = any(len({c.candidate.get(name) for c in node.children}) > 1 for name in names)
        return (1 if differs else 0) + 1  # merge calls (components in parallel) + back-test

    def longest(node) -> int:
        if node.is_leaf:
            return subset_units.get(node.subset_id if node.subset_id is not None else node.node_id,
                                    max(subset_units.values(), default=0))
        return merge_cost(node) + max(longest(c) for c in node.children)

    def shortest_merge(node) -> int:
        return 0 if node.is_leaf else merge_cost(node) + min(shortest_merge(c) for c in node.children)

    root = result.merge_root
    tree = longest(root) if root is not None else 0
    if spread and root is not None:
        tree = max(tree, min(subset_units.values()) + spread + shortest_merge(root))
    valset = 1 if "optimized" in (result.val_scores or {}) else 0
    merge_levels = root.depth() if root is not None else 0
    return {
        "units": tree + valset, "method": "analytic from fgo_result (subset steps, trims, merge tree, valset)",
        "subset_chain_max": max(subset_units.values(), default=0), "subset_chain_min": min(subset_units.values(), default=0),
        "trims": trims, "trims_attributed": "all steps" if all_trimmed else ("single chain" if len(result.subsets) == 1
                                                                           else f">= {spread} on some subset"),
        "merge_levels": merge_levels, "valset_rounds": valset,
    }


def gepa_critical_path(program, server: SimulatedServer) -> dict[str, Any]:
    reflections = sum(1 for r in server.log if not r.overflow and r.model == OPTIMIZER_MODEL
                      and ("new_instruction" in r.outputs or not r.outputs))
    details = getattr(program, "detailed_results", None) if program is not None else None
    full_evals = getattr(details, "num_full_val_evals", None) or 1
    return {"units": 3 * reflections + full_evals, "reflections": reflections, "full_valset_evals": full_evals,
            "method": "structural lower bound: 3 rounds per reflection + full valset evaluations"}


def mipro_critical_path(program, server: SimulatedServer) -> dict[str, Any]:
    outputs = [r.outputs for r in server.log if not r.overflow and r.model == OPTIMIZER_MODEL]
    observations = sum(1 for o in outputs if "observations" in o)
    chain = observations + sum(1 for key in ("summary", "program_description", "module_description",
                                             "proposed_instruction") if any(key in o for o in outputs))
    logs = getattr(program, "trial_logs", None) or {}
    trials = sum(("mb_score" in t) + ("full_eval_score" in t) for t in logs.values())
    return {"units": chain + trials, "proposal_chain": chain, "trial_rounds": trials,
            "method": "structural lower bound: summary/proposal chain + one round per trial and full eval "
                      "(demo bootstrapping not counted)"}


# ----- the driver -------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="48,480,4800", help="comma-separated trainset sizes")
    p.add_argument("--methods", default=",".join(METHOD_NAMES))
    p.add_argument("--latency", type=float, default=0.2, help="seconds per LM call")
    p.add_argument("--size-latency", default="4800=0.05",
                   help="per-size latency overrides, e.g. 4800=0.05 (keeps the default run under ~40 minutes: "
                        "batch-wise and bootstrapping are sequential, 600 steps at n=4800); '' for none")
    p.add_argument("--concurrency", type=int, default=16, help="calls in flight at once (0: unlimited)")
    p.add_argument("--num-threads", type=int, default=16, help="num_threads of every optimizer")
    p.add_argument("--window", type=int, default=8192, help="context window of the simulated LM, in tokens")
    p.add_argument("--val", type=int, default=24, help="valset size (FGO's final check, GEPA, MIPROv2)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--auto", default=None, choices=("light", "medium", "heavy"),
                   help="the budget of FGO, its baselines and GEPA (instead of --epochs and --gepa-metric-calls)")
    p.add_argument("--subset-size", type=int, default=16, help="FGO subset size")
    p.add_argument("--merge-threshold", type=int, default=4, help="FGO merge threshold")
    p.add_argument("--batch-size", type=int, default=16, help="batch size of batch-wise and bootstrapping")
    p.add_argument("--gepa-metric-calls", type=int, default=500, help="GEPA's max_metric_calls")
    p.add_argument("--accuracy", type=float, default=0.3, help="how often the task model is right")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800, help="seconds per (method, size) run")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--rerun", action="store_true", help="run pairs that are already in the results again")
    p.add_argument("--tag", default="", help="suffix of the result keys (e.g. for a second latency)")
    p.add_argument("--in-process", action="store_true",
                   help="run every pair in this process (fast, for tests; peak RSS is then the process's)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--result-file", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def worker_main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Import what any method may import lazily, so the RSS before compile() is the same baseline for all.
    import dspy.teleprompt  # noqa: F401
    import sklearn.cluster  # noqa: F401
    import sklearn.feature_extraction.text  # noqa: F401

    import dspy_fgo  # noqa: F401
    from benchmarks import run  # noqa: F401
    record = run_one(args.worker, args.n, args)
    Path(args.result_file).write_text(json.dumps(record, indent=2, default=str))


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("dspy", "litellm", "dspy-fgo", "gepa", "optuna", "scikit-learn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def worker_command(args: argparse.Namespace, method: str, n: int, result_file: Path) -> list[str]:
    opts = ["--latency", args.latency, "--concurrency", args.concurrency, "--num-threads", args.num_threads,
            "--window", args.window, "--val", args.val, "--epochs", args.epochs, "--subset-size", args.subset_size,
            "--merge-threshold", args.merge_threshold, "--batch-size", args.batch_size,
            "--gepa-metric-calls", args.gepa_metric_calls, "--accuracy", args.accuracy, "--data-seed", args.data_seed]
    opts += ["--auto", args.auto] if args.auto else []
    return [sys.executable, "-m", "benchmarks.scale", "--worker", method, "--n", str(n),
            "--result-file", str(result_file)] + [str(x) for x in opts]


def run_subprocess(cmd: list[str], timeout: float, log_path: Path, result_file: Path) -> dict[str, Any]:
    env = dict(os.environ, TQDM_MININTERVAL="30", PYTHONUNBUFFERED="1")  # progress bars: rare redraws
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return {"error": f"timeout after {timeout:.0f} s", "returncode": None,
                    "elapsed_seconds": time.perf_counter() - started}
    if code != 0 or not result_file.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        return {"error": f"worker exited with code {code}", "returncode": code, "log_tail": tail,
                "elapsed_seconds": time.perf_counter() - started}
    record = json.loads(result_file.read_text())
    result_file.unlink()
    record["returncode"] = code
    record["elapsed_seconds"] = time.perf_counter() - started  # includes imports and data generation
    return record


def main(argv=None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return {}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown:
        sys.exit(f"Unknown methods {unknown}; known: {METHOD_NAMES}")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    path = out / "scale.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}, "invocations": []}
    command = "python -m benchmarks.scale " + shlex.join(argv if argv is not None else sys.argv[1:])
    results["invocations"].append({"command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                   "args": vars(args)})
    results["versions"] = _versions()
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    overrides = {int(k): float(v) for k, v in (item.split("=") for item in args.size_latency.split(",") if item)}
    base = args
    for n in sizes:
        args = argparse.Namespace(**{**vars(base), "latency": overrides.get(n, base.latency)})
        for method in methods:
            key = f"{method}/n{n}{args.tag}"
            if key in results["runs"] and not args.rerun:
                logger.info("%s already done: skipped", key)
                continue
            result_file = out / "logs" / f"{method}-n{n}{args.tag}.result.json"
            cmd = worker_command(args, method, n, result_file)
            logger.info("=== %s: %s", key, shlex.join(cmd))
            if args.in_process:
                record = run_one(method, n, args)
                cmd = [sys.executable, "-m", "benchmarks.scale", "--in-process"] + cmd[cmd.index("--latency"):]
            else:
                record = run_subprocess(cmd, args.timeout, out / "logs" / f"{method}-n{n}{args.tag}.log", result_file)
            record.update(key=key, method=method, n=n, command=shlex.join(cmd), invoked_by=command)
            record.setdefault("latency", args.latency)
            record.setdefault("concurrency", args.concurrency)
            results["runs"][key] = record
            results["summary"] = summarize(results["runs"])
            _write_atomic(path, results)
            logger.info("%s", format_row(record))
    results["summary"] = summarize(results["runs"])
    _write_atomic(path, results)
    print(format_table(results["runs"]))
    save_plot(results, out / "scale.png")
    return results


def _write_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


# ----- summary, table and plot ------------------------------------------------------------------------------


def summarize(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """FGO / all-at-once token ratios and the targets, per size (same tag only)."""
    out: dict[str, Any] = {"fgo_over_all_at_once_tokens": {}, "targets": {}}
    for key, run in runs.items():
        if run.get("method") != "fgo" or run.get("error"):
            continue
        tag = key.split(f"/n{run['n']}", 1)[1]
        base = runs.get(f"all-at-once/n{run['n']}{tag}")
        label = f"n{run['n']}{tag}"
        if base and not base.get("error") and base["optimizer_side"]["prompt_tokens"]:
            ratio = run["optimizer_side"]["prompt_tokens"] / base["optimizer_side"]["prompt_tokens"]
            out["fgo_over_all_at_once_tokens"][label] = ratio
        out["targets"][label] = {
            "tokens_at_most_0.5x_all_at_once": (out["fgo_over_all_at_once_tokens"][label] <= 0.5
                                                if label in out["fgo_over_all_at_once_tokens"] else None),
            "zero_overflows": run.get("overflows", 0) == 0,
            "wall_within_1.25x_bound": (run.get("wall_over_bound") or 99) <= 1.25,
            "latency": run.get("latency"),
        }
    fgo = sorted((r["n"], r["peak_rss_growth_mb"], r["peak_rss_mb"]) for k, r in runs.items()
                 if r.get("method") == "fgo" and not r.get("error") and "peak_rss_mb" in r)
    if len(fgo) >= 2:
        (n0, g0, p0), (n1, g1, p1) = fgo[0], fgo[-1]
        out["fgo_memory"] = {"sizes": [n0, n1], "trainset_ratio": n1 / n0, "peak_rss_ratio": p1 / p0,
                             "rss_growth_ratio": g1 / g0 if g0 > 0 else None,
                             "growth_no_faster_than_trainset": p1 / p0 <= n1 / n0}
    return out


def format_row(r: dict[str, Any]) -> str:
    if r.get("error") and "optimizer_side" not in r:
        return f"{r.get('key', r.get('method'))}: ERROR {r['error'][:200]}"
    side = r["optimizer_side"]
    ratio = r.get("wall_over_bound")
    cp = r.get("critical_path_seconds")
    return (f"{r['method']:<14} n={r['n']:<5} L={r['latency']:<5} opt_prompt_tok={side['prompt_tokens']:>10,} "
            f"opt_calls={side['calls']:>6} all_calls={r.get('total_calls', 0):>6} wall={r['wall_seconds']:8.1f}s "
            f"cp={'-' if cp is None else f'{cp:.1f}'}s thr={r['throughput_bound_seconds']:.1f}s "
            f"ratio={'-' if ratio is None else f'{ratio:.2f}'} overflows={r['overflows']} "
            f"trims={r.get('context_trims')} rss={r['peak_rss_mb']:.0f}MB"
            + (f" ERROR {r['error'][:120]}" if r.get("error") else ""))


def format_table(runs: dict[str, dict[str, Any]]) -> str:
    rows = sorted(runs.values(), key=lambda r: (r.get("n", 0), METHOD_NAMES.index(r["method"])
                                                 if r.get("method") in METHOD_NAMES else 99, r.get("key", "")))
    return "\n".join(format_row(r) for r in rows)


def save_plot(results: dict[str, Any], path: Path) -> None:
    """Optimizer prompt tokens, wall time (and FGO's lower bound), wall / bound, and the FGO / all-at-once
    token ratio, against trainset size. Runs with a tag (another latency) are single marked points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {k: r for k, r in results["runs"].items() if "optimizer_side" in r}
    base_latency = results["invocations"][0]["args"]["latency"]
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.8))
    for method in METHOD_NAMES:
        mine = sorted((r for k, r in runs.items() if r["method"] == method and k == f"{method}/n{r['n']}"),
                      key=lambda r: r["n"])
        tagged = [r for k, r in runs.items() if r["method"] == method and k != f"{method}/n{r['n']}"]
        if not mine and not tagged:
            continue
        ns = [r["n"] for r in mine]
        line = axes[0].plot(ns, [max(1, r["optimizer_side"]["prompt_tokens"]) for r in mine], marker="o",
                            label=method)[0]
        color = line.get_color()
        axes[1].plot(ns, [r["wall_seconds"] for r in mine], marker="o", color=color, label=method)
        ratioed = [r for r in mine if r.get("wall_over_bound")]
        if ratioed:
            axes[2].plot([r["n"] for r in ratioed], [r["wall_over_bound"] for r in ratioed], marker="o", color=color,
                         label=method)
        bounded = [r for r in mine if r["lower_bound_seconds"] > 0]
        if method == "fgo" and bounded:
            axes[1].plot([r["n"] for r in bounded], [r["lower_bound_seconds"] for r in bounded], linestyle=":",
                         color=color, label="fgo lower bound")
        for r in mine + tagged:
            notes = ([f"L={r['latency']}s"] if r["latency"] != base_latency else []) + (["err"] if r.get("error") else [])
            if r in tagged:
                axes[1].scatter([r["n"]], [r["wall_seconds"]], marker="x", color=color)
                if r.get("wall_over_bound"):
                    axes[2].scatter([r["n"]], [r["wall_over_bound"]], marker="x", color=color)
            if notes:
                for ax, y in ((axes[1], r["wall_seconds"]), (axes[2], r.get("wall_over_bound"))):
                    if y:
                        ax.annotate(" ".join(notes), (r["n"], y), fontsize=7, color=color)
    ratios = results.get("summary", {}).get("fgo_over_all_at_once_tokens", {})
    points = sorted((int(re.match(r"n(\d+)", k).group(1)), v) for k, v in ratios.items() if re.fullmatch(r"n\d+", k))
    if points:
        axes[3].plot([p[0] for p in points], [p[1] for p in points], marker="o", label="measured")
    axes[3].axhline(0.5, color="red", linestyle="--", label="target 0.5x")
    axes[3].axhline(0.44, color="gray", linestyle=":", label="paper 0.44x")
    axes[2].axhline(1.25, color="red", linestyle="--", label="FGO target 1.25x")
    axes[0].set(xscale="log", yscale="log", xlabel="trainset size", ylabel="optimizer prompt tokens",
                title="Optimizer-side prompt tokens")
    axes[1].set(xscale="log", yscale="log", xlabel="trainset size", ylabel="seconds",
                title=f"Wall time (latency {base_latency}s unless marked)")
    axes[2].set(xscale="log", xlabel="trainset size", ylabel="wall / lower bound",
                title="Wall time over max(critical path, calls x L / C)")
    axes[3].set(xscale="log", xlabel="trainset size", ylabel="FGO / all-at-once", title="Prompt-token ratio")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
