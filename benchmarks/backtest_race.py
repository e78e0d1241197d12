"""Merge back-tests, backtest="full" against "race" and "half", on a simulated task (offline, no LM server).

    python -m benchmarks.backtest_race --seeds 0,1,2,3,4 --modes full,race,half

The task: ``--topics`` topics, each answered right only when the instructions carry that topic's rule
(20% of the examples are wrong and 10% right whatever the prompt). FGO divides by topic, so each subset
learns its own rule (the paper's settings, ``PAPER_SETTINGS``: free-text rewrites and LM merges, which is
what the simulated merge LM scripts). The merge LM unites the members' rules, except on a seeded fraction of merges: with
``--bad`` it forgets every rule (a clearly worse merge), with ``--partial`` it drops one member's rules.
Both modes see the same merge replies for the same prompts, so where they decide alike they run alike.
Printed per seed and mode: the merge stage's task runs (back-tests), merges decided on part of the union
(stopped early, or every merge with "half"), the final candidate's train and val scores, and for the other
modes the merge nodes (by union) holding another candidate than full's and whether the final program is full's.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import zlib

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import dspy  # noqa: E402

from benchmarks.simulated_lm import SimulatedLM  # noqa: E402
from dspy_fgo import FGO, PAPER_SETTINGS  # noqa: E402

RULE = "Rule for topic {}: answer with the item's label."
RULES = re.compile(r"Rule for topic t\d+: answer with the item's label\.")
QUESTION = re.compile(r"topic (t\d+), item (\d+)")


def correct(instructions: str, topic: str, item: int) -> bool:
    luck = zlib.crc32(f"{topic}:{item}".encode()) % 10
    return luck == 9 or (luck >= 2 and RULE.format(topic) in instructions)


def examples(topics: int, per_topic: int, offset: int) -> list[dspy.Example]:
    return [dspy.Example(question=f"topic t{t}, item {offset + i}", answer=f"label-{offset + i}", category=f"t{t}")
            .with_inputs("question") for t in range(topics) for i in range(per_topic)]


def task_responder(request):
    topic, item = QUESTION.search(request.fields.get("question", "")).groups()
    return {"answer": f"label-{item}" if correct(request.system, topic, int(item)) else "unknown"}


def optimizer_responder(seed: int, bad: float, partial: float):
    def respond(request):
        names = request.output_names
        if "critique" in names:
            return {"critique": "The answer missed the rule of this question's topic; state that rule."}
        if "new_text" in names:
            current = request.fields.get("current_text", "")
            topics = dict.fromkeys(t for t, _ in QUESTION.findall(request.fields.get("feedback", "")))
            return {"new_text": " ".join([current, *(RULE.format(t) for t in topics if RULE.format(t) not in current)])}
        if "merged_text" in names:
            versions = re.split(r"(?m)^Version \d+: .*$", request.fields.get("versions", ""))[1:]
            base = versions[0].strip().split(" Rule for topic")[0]
            per_version = [RULES.findall(v) for v in versions]
            draw = zlib.crc32(f"{seed}:{per_version}".encode()) % 1000 / 1000  # the members' rules decide
            if draw < bad:  # forgets the rules
                return {"merged_text": f"{base} Answer carefully and follow the topic's conventions."}
            if draw < bad + partial:  # drops one member's rules
                del per_version[int(draw * 1000) % len(per_version)]
            return {"merged_text": " ".join([base, *dict.fromkeys(r for rules in per_version for r in rules)])}
        return None

    return respond


def score(instructions: str, data: list[dspy.Example]) -> float:
    return sum(correct(instructions, ex.category, int(QUESTION.search(ex.question).group(2))) for ex in data) / len(data)


def run(mode: str, seed: int, args) -> dict:
    train, val = examples(args.topics, args.per_topic, 0), examples(args.topics, args.per_topic // 2, 1000)
    task = SimulatedLM("simulated/task", responder=task_responder)
    opt = SimulatedLM("simulated/optimizer", responder=optimizer_responder(seed, args.bad, args.partial))
    fgo = FGO(**PAPER_SETTINGS, metric=lambda ex, pred, trace=None: float(ex.answer == pred.answer), optimizer_lm=opt,
              task_lm=task,
              partition="category", num_subsets=args.topics, merge_threshold=args.threshold, epochs=1,
              num_threads=args.threads, seed=seed, backtest=mode)
    result = fgo.compile(dspy.Predict("question -> answer"), trainset=train, valset=val).fgo_result
    merges = [n for n in result.merge_root.walk() if n.children] if result.merge_root else []
    text = result.final_candidate["self"]
    return {"backtest_runs": result.accounting["stages"]["merge"]["metric_calls"], "merges": len(merges),
            "stopped": sum(n.estimated for n in merges), "rejected": sum(n.candidate != n.proposed for n in merges
                                                                         if n.proposed is not None),
            "train": score(text, train), "val": score(text, val), "final": result.final_candidate,
            "metric_calls": result.accounting["metric_calls"], "kept": {tuple(n.indices): n.candidate for n in merges}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--topics", type=int, default=16)
    parser.add_argument("--per-topic", type=int, default=8)
    parser.add_argument("--threshold", type=int, default=4)
    parser.add_argument("--bad", type=float, default=0.3, help="fraction of merges that forget every rule")
    parser.add_argument("--partial", type=float, default=0.2, help="fraction of merges that drop one member's rules")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--modes", default="full,race", help="backtest modes, full first")
    args = parser.parse_args()
    modes = args.modes.split(",")
    logging.disable(logging.WARNING)
    totals = dict.fromkeys(modes, 0)
    print(f"{'seed':>4} {'mode':>4} {'back-test runs':>14} {'merges':>6} {'sampled':>7} {'rejected':>8} "
          f"{'train':>6} {'val':>6} {'metric calls':>12}  decisions unlike full, same final")
    for seed in (int(s) for s in args.seeds.split(",")):
        out = {mode: run(mode, seed, args) for mode in modes}
        for mode, r in out.items():
            totals[mode] += r["backtest_runs"]
            unlike = sum(c != out["full"]["kept"].get(k) for k, c in r["kept"].items())
            same = "" if mode == "full" else f"{unlike}, " + ("yes" if r["final"] == out["full"]["final"] else "NO")
            print(f"{seed:>4} {mode:>4} {r['backtest_runs']:>14} {r['merges']:>6} {r['stopped']:>7} {r['rejected']:>8} "
                  f"{r['train']:>6.3f} {r['val']:>6.3f} {r['metric_calls']:>12}  {same}")
    for mode in modes[1:]:
        print(f"{mode} spent {totals[mode]} of full's {totals['full']} back-test task runs "
              f"({totals[mode] / max(1, totals['full']):.0%})")


if __name__ == "__main__":
    main()
