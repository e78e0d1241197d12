"""Do tool descriptions matter for the local model? Seed ("Helper." / "Does math.") vs hand-written tool texts."""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples"))

import dspy  # noqa: E402
import react_tools as rt  # noqa: E402

from dspy_fgo import Candidate  # noqa: E402
from dspy_fgo.local import local_lms  # noqa: E402

task_lm, _, server = local_lms(task="qwen1.5b", optimizer="qwen1.5b")
test = rt.make_examples(4, 3)
seed = rt.make_agent()
good = Candidate.from_program(seed).updated({
    "tool:lookup_price": "Look up an item by its SKU (e.g. SKU-1003); returns its name and unit price in EUR.",
    "tool:lookup_price.sku": "the item code, e.g. SKU-1003",
    "tool:convert": "Convert an amount in EUR into another currency (EUR, USD, GBP or TRY); returns the amount.",
    "tool:convert.amount": "the amount in EUR (unit price times quantity)",
    "tool:convert.currency": "the target currency code, e.g. USD",
}).apply(seed)
out = {}
try:
    with dspy.context(lm=task_lm):
        for name, agent in (("seed tool texts", seed), ("hand-written tool texts", good)):
            t0 = time.time()
            scores = []
            for ex in test:
                try:
                    scores.append(rt.metric(ex, agent(**ex.inputs())))
                except Exception:
                    scores.append(0.0)
            out[name] = {"score": sum(scores) / len(scores), "scores": scores, "seconds": round(time.time() - t0)}
            print(name, out[name], flush=True)
finally:
    server.stop()
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=2))
