"""The prompts FGO sends, as ``dspy.Signature`` classes, and the adapter that formats and parses them."""

import re
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

_FIELD_MARKER = re.compile(r"\[\[ ## \w+ ## \]\]")


class PromptAdapter(dspy.ChatAdapter):
    """DSPy's ChatAdapter, but a reply without field markers to a one-field prompt is that field's value.

    Small optimizer LMs often answer "- Look for ..." with no ``[[ ## new_rules ## ]]`` header; the stock
    adapter then asks again in JSON (a second call) and fails, and a retry doubles that again."""

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        try:
            return super().parse(signature, completion)
        except AdapterParseError:
            text = completion.strip()
            if len(signature.output_fields) != 1 or not text or _FIELD_MARKER.search(text):
                raise
            return {next(iter(signature.output_fields)): text}


def prompt_adapter() -> dspy.Adapter:
    """The adapter FGO's own prompts use: the one the user configured, else :class:`PromptAdapter`."""
    return dspy.settings.adapter or PromptAdapter()


class CritiqueTrajectory(dspy.Signature):
    """You are the evaluator of an LLM program. Read the program's current instructions and one run of it
    on a task example, compare the prediction with the expected answer, and write a short critique:
    whether the run is correct; if not, what exactly went wrong, which component (instruction or tool
    description) caused it, and a concrete, general rule that would make this and similar examples
    correct. Do not just restate the expected answer."""

    program_components: str = dspy.InputField(desc="the program's current instructions and tool descriptions")
    trajectory: str = dspy.InputField(desc="one run: inputs, expected answer, prediction, steps, score")
    critique: str = dspy.OutputField(desc="diagnosis and a general rule that fixes it, in a few sentences")


class SummarizeCritiques(dspy.Signature):
    """You help improve one component of an LLM program. Read a batch of runs with their critiques and
    write the lessons they teach for this component: the recurring mistakes and the general rules that
    would fix them, most important first. Be concise and specific; no example-specific answers."""

    component_name: str = dspy.InputField()
    current_text: str = dspy.InputField(desc="the component's current text")
    runs_with_critiques: str = dspy.InputField()
    lessons: str = dspy.OutputField(desc="a short list of rules learned from these runs")


class ProposeComponent(dspy.Signature):
    """You improve one component (an instruction or a tool description) of an LLM program. Read its current
    text, the other components for context, and the program's runs on training examples with the
    evaluator's critiques (or lessons summarized from them). Write an improved version of the component
    that keeps what works and adds the general rules that fix the mistakes. Write it as a direct
    instruction to the model; keep it self-contained and under about 300 words. Output only the new text."""

    component_name: str = dspy.InputField()
    current_text: str = dspy.InputField(desc="the component's current text")
    other_components: str = dspy.InputField(desc="the rest of the program, for context")
    feedback: str = dspy.InputField(desc="runs with critiques, or lessons learned from many runs")
    new_text: str = dspy.OutputField(desc="the improved text of the component")


class MergeComponents(dspy.Signature):
    """Several versions of one component of an LLM program were optimized separately, each on a different
    group of training examples, and scored on its own group. Merge them into one version that works for
    all groups: keep every rule that helped some group, drop duplicates, resolve conflicts in favour of
    the higher-scoring version. Write it as a direct instruction to the model, self-contained and under
    about 400 words. Output only the merged text."""

    component_name: str = dspy.InputField()
    versions: str = dspy.InputField(desc="the versions, each with the examples it was optimized on and its score")
    merged_text: str = dspy.OutputField(desc="one merged text for the component")


class ProposeRules(dspy.Signature):
    """You improve one component (an instruction or a tool description) of an LLM program by adding rules
    to it. Read its current text and rules, and the program's runs on training examples (with the
    evaluator's critiques or the metric's feedback). Find what the failed runs have in common and write
    1 to 3 new rules that would have made them correct: each one sentence, stating where to look, which
    label or format marks the right value, or which look-alike to avoid, in terms that hold for other
    inputs too. Never write an example's specific answer, never write code, do not repeat a rule the
    component already has. Output one rule per line, each starting with "- "."""

    component_name: str = dspy.InputField()
    current_text: str = dspy.InputField(desc="the component's current text and rules")
    other_components: str = dspy.InputField(desc="the rest of the program, for context")
    feedback: str = dspy.InputField(desc="runs with critiques or metric feedback, failed runs first")
    new_rules: str = dspy.OutputField(desc='1 to 3 new rules, one per line, each starting with "- "')
