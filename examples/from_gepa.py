"""Coming from dspy.GEPA: the GEPA tutorial's script with only the optimizer's class name changed.

The calls below follow the DSPy GEPA tutorials (dspy.ai/tutorials/gepa_*): a ChainOfThought program, a
metric with textual feedback in GEPA's five-argument form, ``dspy.GEPA(metric=..., auto="light",
num_threads=..., track_stats=True, reflection_minibatch_size=3, reflection_lm=...)`` and
``compile(program, trainset=..., valset=...)``. ``GEPA = FGO`` is the only change. (FGO ignores GEPA's
search knob ``reflection_minibatch_size`` with a warning that names FGO's own: subset_size / num_subsets.)

    python examples/from_gepa.py --offline          # scripted fake LMs from tests/fakes.py: seconds, no key
    python examples/from_gepa.py --task-lm openai/gpt-4.1-mini --reflection-lm openai/gpt-5

The data is a toy (answer with the given word; the hidden rule is UPPERCASE) so that the offline run
shows the optimization work; swap in your own trainset/valset.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dspy  # noqa: E402

from dspy_fgo import FGO as GEPA  # noqa: E402  -- the one change: was `from dspy import GEPA`


def make_data(n, start=0):
    words = ["apple", "river", "stone", "cloud", "maple", "tiger", "piano", "lemon", "ocean", "grape"]
    return [dspy.Example(question=f"word: {words[i % 10]}{i}", answer=f"{words[i % 10]}{i}".upper()).with_inputs("question")
            for i in range(start, start + n)]


class GenerateResponse(dspy.Signature):
    """Answer the question."""

    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


def metric(example, prediction, trace=None, pred_name=None, pred_trace=None):
    return float(prediction.answer == example.answer)


def metric_with_feedback(example, prediction, trace=None, pred_name=None, pred_trace=None):
    correct = prediction.answer == example.answer
    if correct:
        feedback = f"Correct: the answer is {example.answer}."
    elif prediction.answer.lower() == example.answer.lower():
        feedback = f"Right word, wrong case: the expected answer is {example.answer} (uppercase)."
    else:
        feedback = f"Wrong: the expected answer is {example.answer}."
    return dspy.Prediction(score=float(correct), feedback=feedback)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline", action="store_true", help="scripted fake LMs (tests/fakes.py)")
    parser.add_argument("--task-lm", default="openai/gpt-4.1-mini")
    parser.add_argument("--reflection-lm", default="openai/gpt-5")
    parser.add_argument("--threads", type=int, default=32)
    args = parser.parse_args()

    if args.offline:
        sys.path.insert(0, str(ROOT / "tests"))
        from fakes import FakeLM, rule_optimizer, uppercase_task

        lm, reflection_lm = FakeLM(uppercase_task, model="fake/task"), FakeLM(rule_optimizer, model="fake/reflection")
        args.threads = min(args.threads, 2)
    else:
        lm = dspy.LM(args.task_lm, temperature=1, max_tokens=16000)
        reflection_lm = dspy.LM(model=args.reflection_lm, temperature=1.0, max_tokens=32000)
    dspy.configure(lm=lm)

    train_set, val_set, test_set = make_data(12), make_data(6, start=12), make_data(10, start=18)
    program = dspy.ChainOfThought(GenerateResponse)
    evaluate = dspy.Evaluate(devset=test_set, metric=metric, num_threads=args.threads, display_table=False,
                             display_progress=True)
    print("before:", evaluate(program).score)

    optimizer = GEPA(
        metric=metric_with_feedback,
        auto="light",
        num_threads=args.threads,
        track_stats=True,
        reflection_minibatch_size=3,
        reflection_lm=reflection_lm,
    )
    optimized_program = optimizer.compile(program, trainset=train_set, valset=val_set)

    print(optimized_program.predict.signature.instructions)
    print("after:", evaluate(optimized_program).score)
    print(optimized_program.detailed_results.table())  # GEPA's track_stats results: every candidate


if __name__ == "__main__":
    main()
