"""Scripted fake LMs that answer by signature, for offline tests."""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable
from types import SimpleNamespace

import dspy
from dspy.clients.base_lm import BaseLM

from dspy_fgo.budget import count_tokens
from dspy_fgo.executor import Shippable

warnings.filterwarnings("ignore", message="Implementing custom LMs through BaseLM", category=DeprecationWarning)

FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with |\n*\Z)", re.S)
OUTPUTS = re.compile(r"Your output fields are:\n(.*?)(?:\n\n|\Z)", re.S)


class ContextWindowExceeded(Exception):
    """Raised like litellm's error when a prompt is longer than the fake's window."""


class FakeLM(Shippable, BaseLM):  # picklable for Ray workers (counters then stay with the copy)
    """An LM whose answer is ``handler(request) -> dict of output field values``.

    ``request`` has ``.system`` (the signature's instructions and field list), ``.fields`` (the input
    field values of the last user message) and ``.outputs`` (the names of the expected output fields).
    Usage is counted with litellm's counter (as a real tokenizer would) and also summed on the fake itself.
    With ``window``, a prompt longer than that many tokens raises, like a real context-window error.
    ``completion_scale`` multiplies the completion tokens it reports (a tokenizer that splits digits).
    """

    def __init__(self, handler: Callable, model: str = "fake/lm", window: int | None = None,
                 completion_scale: float = 1.0):
        super().__init__(model=model, model_type="chat", temperature=0.0, max_tokens=500, cache=False)
        self.handler, self.window, self.completion_scale = handler, window, completion_scale
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self.overflows = 0
        self._lock = threading.Lock()
        self.requests: list[SimpleNamespace] = []

    def forward(self, prompt=None, messages=None, **kwargs):
        system = "\n".join(m["content"] for m in messages if m["role"] == "system")
        user = messages[-1]["content"]
        prompt_text = "\n".join(str(m["content"]) for m in messages)
        prompt_tokens = count_tokens(prompt_text)
        if self.window is not None and prompt_tokens > self.window:
            with self._lock:
                self.overflows += 1
            raise ContextWindowExceeded(f"prompt of {prompt_tokens} tokens exceeds the window of {self.window}")
        outputs_block = OUTPUTS.search(system)
        outputs = re.findall(r"`(\w+)`", outputs_block.group(1)) if outputs_block else []
        request = SimpleNamespace(system=system, user=user, fields=dict(FIELD.findall(user)), outputs=outputs)
        answer = self.handler(request)
        text = answer if isinstance(answer, str) else format_fields(answer)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": round(count_tokens(text) * self.completion_scale)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        with self._lock:
            self.calls += 1
            self.prompt_tokens += usage["prompt_tokens"]
            self.completion_tokens += usage["completion_tokens"]
            self.requests.append(request)
        choice = SimpleNamespace(message=SimpleNamespace(content=text, tool_calls=None), finish_reason="stop",
                                 logprobs=None)
        return SimpleNamespace(choices=[choice], usage=usage, model=self.model, _hidden_params={})


def format_fields(values: dict) -> str:
    return "\n\n".join(f"[[ ## {k} ## ]]\n{v}" for k, v in values.items()) + "\n\n[[ ## completed ## ]]"


RULE = "Always answer in UPPERCASE."


def uppercase_task(request) -> dict:
    """Task LM: echoes the word, in uppercase only when the instructions carry the rule."""
    word = request.fields.get("question", "").split(":")[-1].strip()
    answer = word.upper() if "UPPERCASE" in request.system else word.lower()
    out = {"answer": answer}
    if "reasoning" in request.outputs:
        out = {"reasoning": "thinking", **out}
    return out


# A raw run (feedback="raw") as render_trajectory shows it: an uppercase answer expected, the lowercase predicted.
RAW_CASE_MISS = re.compile(r"Expected:\n\s+answer: ([A-Z][A-Z0-9]*)\nPredicted:\n(?:\s+\w+: .*\n)*?\s+answer: ([a-z][a-z0-9]*)\n")


def sees_uppercase(feedback: str) -> bool:
    """What a reader of the feedback learns: a critique saying "uppercase", or raw runs that miss only the case."""
    return "uppercase" in feedback.lower() or any(
        want.lower() == got for want, got in RAW_CASE_MISS.findall(feedback))


def rule_optimizer(request) -> dict:
    """Evaluator, optimizer and merge LM in one: finds and spreads the uppercase rule (from a critique or
    from the raw runs)."""
    if "critique" in request.outputs:
        return {"critique": "The expected answer is in capitals; the rule is to answer in uppercase."}
    if "lessons" in request.outputs:
        return {"lessons": "Answers must be uppercase."}
    if "new_text" in request.outputs:
        current = request.fields.get("current_text", "")
        if sees_uppercase(request.fields.get("feedback", "")) and RULE not in current:
            return {"new_text": f"{current} {RULE}".strip()}
        return {"new_text": current}
    if "new_rules" in request.outputs:
        current = request.fields.get("current_text", "")
        if sees_uppercase(request.fields.get("feedback", "")) and RULE not in current:
            return {"new_rules": f"- {RULE}"}
        return {"new_rules": ""}
    if "merged_text" in request.outputs:
        versions = request.fields.get("versions", "")
        body = [line for line in versions.splitlines() if line and not line.startswith("Version")]
        merged = " ".join(dict.fromkeys(" ".join(body).split(". ")))
        return {"merged_text": merged}
    raise AssertionError(f"unexpected request for outputs {request.outputs}")


def word_examples(n: int, categories: int = 3) -> list[dspy.Example]:
    words = ["apple", "river", "stone", "cloud", "maple", "tiger", "piano", "lemon", "ocean", "grape"]
    return [
        dspy.Example(question=f"word: {words[i % len(words)]}{i}", answer=f"{words[i % len(words)]}{i}".upper(),
                     category=f"c{i % categories}").with_inputs("question")
        for i in range(n)
    ]


def exact_metric(example, prediction, trace=None) -> float:
    return float(prediction.answer == example.answer)
