"""The diagnosis view of one run: per subset the seed score, each step's critiques, proposals (kept or not)
and their scores; per merge the inputs, the merged text and the back-test; then the final choice.

    python -m dspy_fgo.report fgo_run.json        # a file written by FGOResult.to_json()

or ``print(optimized.fgo_result.report())``.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterable

from .merge import MergeNode
from .optimize import StepRecord, SubsetResult
from .result import FGOResult
from .rules import split_rules


def _cut(text: str | None, chars: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= chars else text[: chars - 3] + "..."


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _block(text: str, indent: str, chars: int) -> list[str]:
    return textwrap.wrap(_cut(text, chars), 100, initial_indent=indent, subsequent_indent=" " * len(indent)) or [indent]


def step_lines(n: int, step: StepRecord, chars: int) -> list[str]:
    after = _score(step.score_after)
    verdict = "kept" if step.accepted else ("no change" if not step.changed else "not kept")
    lines = [f"  step {n} (epoch {step.epoch}): score {_score(step.score_before)} -> {after} [{verdict}]"]
    critiques = [c for c in step.critiques if c and not c.startswith("Correct:")]
    if step.critiques and not any(step.critiques):
        lines.append("    no critic: the proposer saw the runs and the metric's feedback")
    for c in critiques[:2]:
        lines += _block(c, "    critique: ", chars)
    if len(critiques) > 2:
        lines.append(f"    ... {len(critiques) - 2} more critiques")
    for name, text in step.proposed.items():
        lines += _block(text, f"    proposed [{name}]: ", chars)
    for name, why in step.rejected.items():
        lines += _block(why, f"    rejected [{name}]: ", chars)
    return lines


def subset_lines(subset: SubsetResult, categories: Iterable[str], chars: int) -> list[str]:
    cats = ", ".join(categories)
    lines = [f"Subset {subset.subset_id}: {len(subset.indices)} examples" + (f" ({cats})" if cats else "")
             + f"; seed {_score(subset.seed_score)}, best {_score(subset.best_score)}"
             + (f"; stopped: {subset.stopped}" if subset.stopped else "")]
    for n, step in enumerate(subset.steps, 1):
        lines += step_lines(n, step, chars)
    if subset.best_candidate != subset.seed_candidate:
        for name in subset.best_candidate.changed_components(subset.seed_candidate):
            lines += _block(subset.best_candidate[name], f"  best [{name}]: ", chars * 2)
    return lines


def merge_lines(node: MergeNode, chars: int) -> list[str]:
    members = ", ".join(f"{c.node_id} ({_score(c.score)})" for c in node.children)
    cats = ", ".join(node.categories)
    lines = [f"Merge node {node.node_id} of {members}" + (f" [{cats}]" if cats else "")
             + f" on {len(node.indices)} examples: {node.note}"]
    if node.proposed is not None:
        for name in node.proposed:
            if len({c.candidate.get(name) for c in node.children}) > 1:
                lines += _block(node.proposed[name], f"  merged [{name}] ({_score(node.proposed_score)}): ",
                                chars * 2)
            if "pruned" in node.note:
                kept = set(split_rules(node.candidate.get(name, ""))[1])
                lines += [f"  pruned [{name}]: {rule}" for rule in split_rules(node.proposed[name])[1] if rule not in kept]
    return lines


def diagnosis_report(result: FGOResult, chars: int = 300) -> str:
    """The run as readable text (long texts cut to about ``chars`` characters); a run in rounds, round by round."""
    if result.rounds:
        parts = [f"{result.method}: chose {result.final_choice} ({result.reason})"]
        parts += [f"\n===== round {i} of {len(result.rounds)} =====\n" + diagnosis_report(r, chars)
                  for i, r in enumerate(result.rounds, 1)]
        return "\n".join(parts)
    lines = [f"{result.method}: chose {result.final_choice} ({result.reason})"]
    for name, text in result.seed_candidate.items():
        lines += _block(text, f"seed [{name}]: ", chars)
    leaves = {n.subset_id: n.categories for n in (result.merge_root.walk() if result.merge_root else ())
              if n.subset_id is not None}
    for subset in result.subsets:
        lines.append("")
        lines += subset_lines(subset, leaves.get(subset.subset_id, []), chars)
    merges = [n for n in (result.merge_root.walk() if result.merge_root else ()) if n.children]
    for node in reversed(merges):  # bottom-up
        lines.append("")
        lines += merge_lines(node, chars)
    lines.append("")
    if result.val_scores:
        lines.append("valset: " + ", ".join(f"{k} {v:.3f}" for k, v in result.val_scores.items()))
    for name in result.final_candidate.changed_components(result.seed_candidate):
        lines += _block(result.final_candidate[name], f"final [{name}]: ", chars * 3)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m dspy_fgo.report <fgo_run.json>")
    print(diagnosis_report(FGOResult.load(args[0])))


if __name__ == "__main__":
    main()
