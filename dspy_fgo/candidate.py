"""Candidate: the optimizable text of a DSPy program, as an immutable mapping ``component -> text``.

Component names a person can read:

- ``"<predictor path>"``: a predictor's instructions (``"qa.predict"``). For a ``dspy.ReAct`` the component
  is the ReAct module's own path and holds the *task* instructions only; the tool list and ReAct's
  boilerplate are rebuilt by DSPy when the candidate is applied, so a rewrite can never garble them.
- ``"tool:<name>"``: a ``dspy.Tool`` description; ``"tool:<name>.<arg>"``: one argument's description.

Reading (:meth:`Candidate.from_program`) and applying (:meth:`Candidate.apply`) are the only two places
that know how DSPy stores these texts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dspy

TOOL_PREFIX = "tool:"
COMPONENT_KINDS = ("instructions", "tools", "all")
# dspy.ReAct adds this tool itself and rebuilds it on construction; it is not the user's to optimize.
_REACT_FINISH = "finish"


class Candidate(Mapping):
    """An immutable mapping from component name to text."""

    def __init__(self, texts: Mapping[str, str]):
        self._texts = dict(sorted(texts.items()))

    def __getitem__(self, key: str) -> str:
        return self._texts[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)

    def __hash__(self) -> int:
        return hash(tuple(self._texts.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __repr__(self) -> str:
        return f"Candidate({self._texts!r})"

    def updated(self, updates: Mapping[str, str]) -> Candidate:
        """A copy with some components replaced (unknown names are an error)."""
        unknown = set(updates) - set(self._texts)
        if unknown:
            raise KeyError(f"Unknown components {sorted(unknown)}; known: {sorted(self._texts)}")
        return Candidate({**self._texts, **updates})

    def changed_components(self, other: Candidate) -> list[str]:
        return [name for name in self if self[name] != other.get(name)]

    def render(self) -> str:
        """All components as readable text, one block per component."""
        return "\n\n".join(f"[{name}]\n{text}" for name, text in self.items())

    # ----- DSPy programs -----------------------------------------------------------------------------

    @classmethod
    def from_program(cls, program: dspy.Module, components: str = "all") -> Candidate:
        """Read the current instructions and tool descriptions of ``program``."""
        if components not in COMPONENT_KINDS:
            raise ValueError(f"components must be one of {COMPONENT_KINDS}, got {components!r}")
        texts: dict[str, str] = {}
        if components in ("instructions", "all"):
            texts.update(_read_instructions(program))
        if components in ("tools", "all"):
            for name, tool in _find_tools(program).items():
                texts[TOOL_PREFIX + name] = tool.desc or ""
                for arg, schema in (tool.args or {}).items():
                    texts[f"{TOOL_PREFIX}{name}.{arg}"] = (schema or {}).get("description", "")
        return cls(texts)

    def apply(self, program: dspy.Module) -> dspy.Module:
        """Return a deep copy of ``program`` carrying this candidate's texts (``program`` is untouched)."""
        new = program.deepcopy()
        tools = _find_tools(new)
        for name, text in self.items():
            if name.startswith(TOOL_PREFIX):
                _set_tool_text(tools, name[len(TOOL_PREFIX):], text)
        react_paths = {path for path, _ in _react_modules(new)}
        predictors = dict(new.named_predictors())
        for name, text in self.items():
            if name.startswith(TOOL_PREFIX) or name in react_paths:
                continue
            if name not in predictors:
                raise KeyError(f"Candidate component {name!r} names no predictor of this program")
            predictors[name].signature = predictors[name].signature.with_instructions(text)
        for path, react in _react_modules(new):
            _rebuild_react(react, self.get(path, react.signature.instructions))
        return new

    # ----- persistence -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, str]:
        return dict(self._texts)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False))

    @classmethod
    def from_json(cls, path: str | Path) -> Candidate:
        return cls(json.loads(Path(path).read_text()))


# ----- how DSPy stores the texts ---------------------------------------------------------------------


def _react_modules(program: dspy.Module) -> list[tuple[str, dspy.ReAct]]:
    found = [("self", program)] if isinstance(program, dspy.ReAct) else []
    found += [(path, m) for path, m in program.named_sub_modules() if isinstance(m, dspy.ReAct) and m is not program]
    # named_sub_modules names the root "self"; drop that prefix so names read like named_predictors().
    return [(_strip_self(path), m) for path, m in found]


def _strip_self(path: str) -> str:
    return path[len("self."):] if path.startswith("self.") else path


def _read_instructions(program: dspy.Module) -> dict[str, str]:
    reacts = _react_modules(program)
    inside_react = {
        id(p) for _, react in reacts for p in react.predictors()
    }
    texts = {path: react.signature.instructions for path, react in reacts}
    for path, predictor in program.named_predictors():
        if id(predictor) not in inside_react:
            texts[path] = predictor.signature.instructions
    return texts


def _find_tools(program: dspy.Module) -> dict[str, dspy.Tool]:
    """Every dspy.Tool held by the program's modules, directly or in a list, tuple or dict."""
    tools: dict[str, dspy.Tool] = {}
    modules = [program] + [m for _, m in program.named_sub_modules() if m is not program]
    for module in modules:
        for value in vars(module).values():
            for tool in _tools_in(value):
                if isinstance(module, dspy.ReAct) and tool.name == _REACT_FINISH:
                    continue
                tools.setdefault(tool.name, tool)
    return tools


def _tools_in(value: Any) -> list[dspy.Tool]:
    if isinstance(value, dspy.Tool):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, dspy.Tool)]
    return []


def _set_tool_text(tools: dict[str, dspy.Tool], target: str, text: str) -> None:
    name, _, arg = target.partition(".")
    if name not in tools:
        raise KeyError(f"Candidate component 'tool:{target}' names no tool of this program")
    tool = tools[name]
    if not arg:
        tool.desc = text
        return
    if arg not in (tool.args or {}):
        raise KeyError(f"Tool {name!r} has no argument {arg!r}")
    schema = dict(tool.args[arg] or {})
    if text:
        schema["description"] = text
    else:
        schema.pop("description", None)
    tool.args[arg] = schema


def _rebuild_react(react: dspy.ReAct, instructions: str) -> None:
    """Let DSPy rebuild ReAct's prompts from the task instructions and the (updated) tools.

    ``dspy.ReAct`` writes the tool list into its predictor's instructions at construction, so the only
    faithful way to update them is to construct a fresh ReAct and copy its signatures over (demos kept).
    """
    user_tools = [t for name, t in react.tools.items() if name != _REACT_FINISH]
    signature = react.signature.with_instructions(instructions)
    fresh = dspy.ReAct(signature, tools=user_tools, max_iters=react.max_iters)
    react.signature = signature
    react.tools = fresh.tools
    react.react.signature = fresh.react.signature
    fresh_extract = dict(fresh.extract.named_predictors())
    for path, predictor in react.extract.named_predictors():
        predictor.signature = fresh_extract[path].signature
