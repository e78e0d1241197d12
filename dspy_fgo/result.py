"""FGOResult: the record of one ``compile()`` (subsets, merge tree, accounting, final choice)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .candidate import Candidate
from .merge import MergeNode
from .optimize import SubsetResult


@dataclass
class FGOResult:
    method: str
    seed_candidate: Candidate
    final_candidate: Candidate
    final_choice: str  # "optimized" or "seed"
    reason: str
    subsets: list[SubsetResult] = field(default_factory=list)
    merge_root: MergeNode | None = None
    accounting: dict[str, Any] = field(default_factory=dict)
    val_scores: dict[str, float] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    stopped: str | None = None
    seconds: float = 0.0
    resumed: dict[str, int] = field(default_factory=dict)  # subsets, merges, valset scores read back
    selected: int | str = "seed"  # the merge-tree node id that won, or "seed"
    train_scores: dict[str, float] = field(default_factory=dict)  # without a valset: the union back-test
    error_counts: dict[str, int] = field(default_factory=dict)  # failures per kind (role or stage)

    @property
    def merge_tree(self) -> list[dict[str, Any]]:
        return [node.to_dict() for node in self.merge_root.walk()] if self.merge_root else []

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "config": self.config,
            "final_choice": self.final_choice,
            "reason": self.reason,
            "seed_candidate": self.seed_candidate.to_dict(),
            "final_candidate": self.final_candidate.to_dict(),
            "val_scores": self.val_scores,
            "subsets": [s.to_dict() for s in self.subsets],
            "merge_tree": self.merge_tree,
            "accounting": self.accounting,
            "errors": self.errors,
            "stopped": self.stopped,
            "seconds": self.seconds,
            "resumed": self.resumed,
            "selected": self.selected,
            "train_scores": self.train_scores,
            "error_counts": self.error_counts,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str, allow_nan=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    def summary(self) -> str:
        """A few readable lines: what was chosen and why, scores, optimizer-side tokens."""
        side = self.accounting.get("optimizer_side", {})
        lines = [
            f"{self.method}: chose {self.final_choice} ({self.reason})",
            f"  subsets: {len(self.subsets)}, merge nodes: {len(self.merge_tree)}, "
            f"errors: {sum(self.error_counts.values()) or len(self.errors)} {self.error_counts or ''}".rstrip(),
            f"  optimizer-side: {side.get('calls', 0)} calls, {side.get('prompt_tokens', 0)} prompt tokens, "
            f"{side.get('completion_tokens', 0)} completion tokens",
        ]
        if self.val_scores:
            lines.append("  valset: " + ", ".join(f"{k} {v:.3f}" for k, v in self.val_scores.items()))
        return "\n".join(lines)

    def plot(self, path: str | Path | None = None):
        """Score before/after per subset and the merge back-test scores, as a matplotlib figure."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 4))
        left, right = fig.subplots(1, 2)
        for s in self.subsets:
            xs = [0] + [i + 1 for i, st in enumerate(s.steps) if st.score_after is not None]
            ys = ([s.steps[0].score_before] if s.steps else [0.0]) + [
                st.score_after for st in s.steps if st.score_after is not None
            ]
            left.plot(xs, ys, marker="o", label=f"subset {s.subset_id}")
        left.set(title="Subset scores per step", xlabel="step", ylabel="score")
        nodes = [n for n in self.merge_tree if n["children"]]
        right.bar([str(n["node_id"]) for n in nodes], [n["score"] or 0 for n in nodes])
        right.set(title="Merge back-test scores", xlabel="merge node", ylabel="score")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig
