"""What the short-input tasks (tickets, prices, tracking) share: a task record, balanced categories, the
`datasets` cache, examples, the program, the exact-match metric and its feedback metric.

A task module defines its generator, its signature (the seed instruction is the signature's docstring),
its normaliser, one rule per category (the feedback cites it) and a HAND_WRITTEN instruction, and
describes itself with a :class:`ShortTask`.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
from datasets import Dataset

from benchmarks.tasks.invoices import AnswerInJSON, _field

CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache"


@dataclass(frozen=True)
class ShortTask:
    name: str
    version: int  # bump when the generator's output changes, so stale caches are not reused
    generate_one: Callable[[random.Random, str], dict[str, Any]]  # (rng, category) -> row
    categories: tuple[str, ...]
    signature: type[dspy.Signature]
    input_field: str
    output_field: str
    normalize: Callable[[str], str]
    rules: Mapping[str, str]  # category -> the rule that decides its label (cited in the feedback)
    hand_written: str

    def generate(self, n: int, seed: int = 0) -> list[dict[str, Any]]:
        """n rows with categories as balanced as n allows, in shuffled order; deterministic in seed."""
        if n < 0:
            raise ValueError("n must be >= 0")
        rng = random.Random(f"{self.name}:{seed}")
        categories = [self.categories[i % len(self.categories)] for i in range(n)]
        rng.shuffle(categories)
        rows = [self.generate_one(random.Random(f"{self.name}:{seed}:{i}"), c) for i, c in enumerate(categories)]
        for row, category in zip(rows, categories, strict=True):
            row["category"] = category
        return rows

    def load(self, n: int, seed: int = 0, cache_dir: str | Path | None = None) -> Dataset:
        """generate() as a Dataset, cached on disk (Arrow) per version, seed and n."""
        path = Path(cache_dir or CACHE_DIR / self.name) / f"v{self.version}-seed{seed}-n{n}"
        if not path.exists():
            partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
            Dataset.from_list(self.generate(n, seed)).save_to_disk(str(partial))
            try:
                partial.rename(path)
            except OSError:  # another process cached it first
                shutil.rmtree(partial, ignore_errors=True)
        return Dataset.load_from_disk(str(path))

    def to_examples(self, rows: Iterable[Mapping[str, Any]]) -> list[dspy.Example]:
        """Examples with the task's one input field; the label, the category and the decoys ride along."""
        return [dspy.Example(**{k: row[k] for k in (self.input_field, self.output_field, "category", "decoys")})
                .with_inputs(self.input_field) for row in rows]

    def make_program(self, kind: str = "predict", hand_written: bool = False) -> dspy.Module:
        """dspy.Predict over the signature ("predict"), or the same under DSPy's JSONAdapter ("predict-json");
        with the seed instruction (the signature's docstring) or the HAND_WRITTEN one."""
        if kind not in ("predict", "predict-json"):
            raise ValueError(f"unknown program kind {kind!r}; choose predict or predict-json")
        signature = self.signature.with_instructions(self.hand_written) if hand_written else self.signature
        predict = dspy.Predict(signature)
        return AnswerInJSON(predict) if kind == "predict-json" else predict

    def metric(self, example: Any, prediction: Any, trace: Any = None) -> float:
        """1.0 when the predicted output equals the label after the task's light normalisation."""
        predicted = _field(prediction, self.output_field)
        if predicted is None:
            return 0.0
        return float(self.normalize(str(predicted)) == self.normalize(str(_field(example, self.output_field))))

    def feedback_metric(self, example: Any, prediction: Any, trace: Any = None, pred_name: str | None = None,
                        pred_trace: Any = None) -> dspy.Prediction:
        """metric plus feedback: expected against got and, when wrong, the rule that decides the label."""
        return self._feedback(example, prediction, cite_rule=True)

    def plain_feedback_metric(self, example: Any, prediction: Any, trace: Any = None, pred_name: str | None = None,
                              pred_trace: Any = None) -> dspy.Prediction:
        """metric plus feedback that says only expected against got: the rules are left to be learned."""
        return self._feedback(example, prediction, cite_rule=False)

    def _feedback(self, example: Any, prediction: Any, cite_rule: bool) -> dspy.Prediction:
        score = self.metric(example, prediction)
        expected, predicted = _field(example, self.output_field), _field(prediction, self.output_field)
        got = f"no {self.output_field}" if predicted is None else f'"{predicted}"'
        if score:
            return dspy.Prediction(score=score, feedback=f'Correct: expected "{expected}" and got {got}.')
        rule = self.rules.get(_field(example, "category"), "") if cite_rule else ""
        return dspy.Prediction(score=score, feedback=f'Wrong: expected "{expected}" but got {got}. {rule}'.strip())


def pick_other(rng: random.Random, make: Callable[[], str], avoid: Iterable[str]) -> str:
    """make() until its value is not in avoid (decoys never equal the label or each other)."""
    taken = set(avoid)
    for _ in range(100):
        value = make()
        if value not in taken:
            return value
    raise RuntimeError("could not draw a distinct value")


def digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(n - 1))
