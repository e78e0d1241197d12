"""Save and load an optimized program with everything FGO changed, tool descriptions included.

DSPy's ``program.save()`` keeps signatures and demos but not ``dspy.Tool`` descriptions, and a
``dspy.ReAct`` rebuilds its prompt from its tools. :func:`save_program` stores DSPy's own state plus
the program's :class:`Candidate`; :func:`load_program` restores both onto a freshly built program.
"""

from __future__ import annotations

import json
from pathlib import Path

import dspy

from .candidate import Candidate
from .checkpoint import write_json_atomic

FORMAT = "dspy-fgo/program-v1"


def save_program(program: dspy.Module, path: str | Path) -> None:
    """Write ``program``'s DSPy state and its instructions and tool descriptions to one JSON file."""
    write_json_atomic(Path(path), {
        "format": FORMAT,
        "dspy_state": program.dump_state(),
        "candidate": Candidate.from_program(program, "all").to_dict(),
    })


def load_program(program: dspy.Module, path: str | Path) -> dspy.Module:
    """A copy of ``program`` (built the same way as the saved one) carrying the saved state and texts."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path} was not written by dspy_fgo.save_program (format {data.get('format')!r}).")
    candidate = Candidate(data["candidate"])
    known = set(Candidate.from_program(program, "all"))
    if set(candidate) != known:
        raise ValueError(
            f"{path} does not fit this program: saved components {sorted(set(candidate) - known)} are missing "
            f"and {sorted(known - set(candidate))} are new. Build the program the same way it was saved."
        )
    loaded = program.deepcopy()
    loaded.load_state(data["dspy_state"])
    return candidate.apply(loaded)
