"""A ReAct agent whose tools are described unhelpfully, optimized by FGO (instructions and tool texts).

The agent answers price questions about a small warehouse catalog with two real Python tools. Their
descriptions start out as "Helper." and "Does math.", so the agent does not know what they do or what
their arguments mean. FGO can rewrite the tools' descriptions and argument descriptions as well as
the instructions (``components="all"``); compare with ``components="instructions"``.

    python examples/react_tools.py --components all            # local models (python -m dspy_fgo.local setup)
    python examples/react_tools.py --task-lm openai/gpt-4o-mini --optimizer-lm openai/gpt-4o
"""

import argparse
import json
import logging
import os
import random
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from dspy_fgo import FGO, save_program  # noqa: E402

CATALOG = {"SKU-1001": ("steel bolts", 12.5), "SKU-1002": ("copper wire", 48.0), "SKU-1003": ("oak plank", 21.75),
           "SKU-1004": ("glass panel", 95.2), "SKU-1005": ("rubber seal", 3.4), "SKU-1006": ("brass hinge", 7.9)}
RATES = {"EUR": 1.0, "USD": 1.08, "GBP": 0.85, "TRY": 35.0}


def lookup_price(sku: str) -> str:
    """Helper."""
    name, price = CATALOG.get(sku.strip().upper(), (None, None))
    return f"{sku}: {name}, {price:.2f} EUR per unit" if name else f"unknown item {sku!r}"


def convert(amount: float, currency: str) -> str:
    """Does math."""
    rate = RATES.get(currency.strip().upper())
    return f"{float(amount) * rate:.2f} {currency.upper()}" if rate else f"unknown currency {currency!r}"


def make_agent() -> dspy.Module:
    return dspy.ReAct("question -> answer: float", tools=[lookup_price, convert], max_iters=5)


def make_examples(n: int, seed: int) -> list[dspy.Example]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        sku, currency, qty = rng.choice(list(CATALOG)), rng.choice(list(RATES)), rng.randint(1, 9)
        answer = round(CATALOG[sku][1] * qty * RATES[currency], 2)
        out.append(dspy.Example(question=f"What do {qty} units of {sku} cost in {currency}?", answer=answer,
                                category=currency).with_inputs("question"))
    return out


def metric(example, prediction, trace=None) -> float:
    try:
        return float(abs(float(prediction.answer) - example.answer) <= 0.01 * max(1.0, example.answer))
    except (TypeError, ValueError):
        return 0.0


def score(program, examples, lm) -> float:
    with dspy.context(lm=lm):
        return dspy.Evaluate(devset=examples, metric=metric, num_threads=2, display_progress=True)(program).score / 100


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--components", default="all", choices=["instructions", "tools", "all"])
    parser.add_argument("--task-lm", default="local:qwen1.5b")
    parser.add_argument("--optimizer-lm", default="local:qwen1.5b")
    parser.add_argument("--train", type=int, default=8)
    parser.add_argument("--val", type=int, default=4)
    parser.add_argument("--test", type=int, default=12)
    parser.add_argument("--out", default="react_tools_result.json")
    parser.add_argument("--optimizer-max-tokens", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0, help="FGO's seed (the data stay fixed)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    server = None
    if args.task_lm.startswith("local:") or args.optimizer_lm.startswith("local:"):
        from dspy_fgo.local import LocalServer

        aliases = [m.split(":", 1)[1] for m in (args.task_lm, args.optimizer_lm) if m.startswith("local:")]
        server = LocalServer(models=tuple(dict.fromkeys(aliases))).start()

    def make_lm(name, **kw):
        return server.lm(name.split(":", 1)[1], **kw) if name.startswith("local:") else dspy.LM(name, **kw)

    task_lm = make_lm(args.task_lm, temperature=0.0, max_tokens=400)
    # cache=False: DSPy reports no usage for cache hits, and the two --components runs share critiques.
    optimizer_lm = make_lm(args.optimizer_lm, temperature=0.7, max_tokens=args.optimizer_max_tokens, cache=False)
    train, val, test = make_examples(args.train, 1), make_examples(args.val, 2), make_examples(args.test, 3)
    try:
        dspy.configure(lm=task_lm)
        started = time.perf_counter()
        optimized = FGO(metric=metric, optimizer_lm=optimizer_lm, components=args.components, num_subsets=2,
                        epochs=1, num_threads=2, seed=args.seed).compile(make_agent(), trainset=train, valset=val)
        minutes = (time.perf_counter() - started) / 60
        result = optimized.fgo_result
        report = {
            "command": "python examples/react_tools.py " + " ".join(sys.argv[1:]),
            "components": args.components, "seed_test": score(make_agent(), test, task_lm),
            "optimized_test": score(optimized, test, task_lm), "minutes": minutes,
            "optimizer_side": result.accounting["optimizer_side"], "final_choice": result.final_choice,
            "reason": result.reason, "final_candidate": result.final_candidate.to_dict(),
        }
        print(json.dumps(report, indent=2))
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
        save_program(optimized, args.out.replace(".json", ".program.json"))
        result.to_json(args.out.replace(".json", ".fgo.json"))  # every subset's and merge's texts and scores
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
