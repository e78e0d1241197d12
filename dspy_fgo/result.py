"""FGOResult: the record of one ``compile()`` (subsets, merge tree, accounting, final choice)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .candidate import Candidate
from .merge import MergeNode
from .optimize import SubsetResult

FORMAT_VERSION = 4  # 2: candidates, lineage, best outputs; 3: steps keep critiques and proposals, merges their
# text; 4: each round's record of a run spent in rounds (``rounds.py``)


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
    # every candidate: id, origin, parents (ids), texts, per-example scores per split ("train", "val")
    candidates: list[dict[str, Any]] = field(default_factory=list)
    best_outputs: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # track_best_outputs
    winner: int | None = None  # the id (in ``candidates``) of the returned program's candidate
    rounds: list[FGOResult] = field(default_factory=list)  # a run in rounds: each round's record (``rounds.py``)
    format_version: int = FORMAT_VERSION

    # ----- GEPA's DspyGEPAResult names -------------------------------------------------------------------

    @property
    def total_metric_calls(self) -> int:
        return int(self.accounting.get("metric_calls", 0))

    @property
    def best_idx(self) -> int | None:
        return self.winner

    @property
    def parents(self) -> list[list[int]]:
        return [list(c["parents"]) for c in self.candidates]

    @property
    def val_aggregate_scores(self) -> list[float | None]:
        return [c.get("val_mean") for c in self.candidates]

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
            "candidates": self.candidates,
            "best_outputs": {split: {str(i): v for i, v in d.items()} for split, d in self.best_outputs.items()},
            "winner": self.winner,
            "rounds": [r.to_dict() for r in self.rounds],
            "format_version": self.format_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FGOResult:
        """The result :meth:`to_dict` wrote (format 1 files, without candidates, load too)."""
        version = int(data.get("format_version", 1))
        if version > FORMAT_VERSION:
            raise ValueError(f"FGOResult format {version} is newer than this dspy-fgo reads ({FORMAT_VERSION}): "
                             "upgrade dspy-fgo")
        by_id: dict[int, MergeNode] = {}
        for node in reversed(data.get("merge_tree", [])):  # walk() order is parents first
            by_id[node["node_id"]] = MergeNode.from_dict(node, by_id)
        root = by_id[data["merge_tree"][0]["node_id"]] if data.get("merge_tree") else None

        def int_keys(d: dict) -> dict:
            return {int(k): v for k, v in d.items()}

        candidates = [dict(c, scores={split: int_keys(s) for split, s in c.get("scores", {}).items()})
                      for c in data.get("candidates", [])]
        return cls(
            method=data["method"], seed_candidate=Candidate(data["seed_candidate"]),
            final_candidate=Candidate(data["final_candidate"]), final_choice=data["final_choice"],
            reason=data["reason"], subsets=[SubsetResult.from_dict(s) for s in data.get("subsets", [])],
            merge_root=root, accounting=data.get("accounting", {}), val_scores=data.get("val_scores", {}),
            errors=data.get("errors", []), config=data.get("config", {}), stopped=data.get("stopped"),
            seconds=data.get("seconds", 0.0), resumed=data.get("resumed", {}), selected=data.get("selected", "seed"),
            train_scores=data.get("train_scores", {}), error_counts=data.get("error_counts", {}),
            candidates=candidates,
            best_outputs={split: int_keys(d) for split, d in data.get("best_outputs", {}).items()},
            winner=data.get("winner"), rounds=[cls.from_dict(r) for r in data.get("rounds", [])],
            format_version=FORMAT_VERSION,
        )

    @classmethod
    def load(cls, path: str | Path) -> FGOResult:
        """Read back a result written by :meth:`to_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str, allow_nan=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    def summary(self) -> str:
        """A few readable lines: what was chosen and why, scores, optimizer-side tokens, and the cost estimate
        against what was spent (per role: calls and tokens, actual/estimate)."""
        side = self.accounting.get("optimizer_side", {})
        lines = [
            f"{self.method}: chose {self.final_choice} ({self.reason})",
            f"  subsets: {len(self.subsets)}, merge nodes: {len(self.merge_tree)}, "
            f"errors: {sum(self.error_counts.values()) or len(self.errors)} {self.error_counts or ''}".rstrip(),
            f"  optimizer-side: {side.get('calls', 0)} calls, {side.get('prompt_tokens', 0)} prompt tokens, "
            f"{side.get('completion_tokens', 0)} completion tokens",
        ]
        if self.rounds:
            lines.append(f"  rounds: {len(self.rounds)} (the record is the round that made the program; .rounds: each)")
        if self.val_scores:
            lines.append("  valset: " + ", ".join(f"{k} {v:.3f}" for k, v in self.val_scores.items()))
        if self.accounting:
            lines.append(f"  metric calls: {self.total_metric_calls}"
                         + (f" of {limit}" if (limit := self.accounting.get("limits", {}).get("max_metric_calls"))
                            else ""))
            from .estimate import comparison

            lines += comparison(self.accounting)
        return "\n".join(lines)

    def report(self, chars: int = 300) -> str:
        """The diagnosis view: per subset the critiques, proposals and their scores, per merge the inputs,
        the merged text and the back-test (``dspy_fgo.report``)."""
        from .report import diagnosis_report

        return diagnosis_report(self, chars)

    def table(self) -> str:
        """GEPA-style table: one row per candidate with its lineage and mean scores (* marks the winner)."""
        rows = [("id", "origin", "parents", "train (n)", "val (n)")]
        def cell(c: dict[str, Any], split: str) -> str:
            n = len(c["scores"].get(split, {}))
            mean = c.get(f"{split}_mean")
            return f"{mean:.3f} ({n})" if mean is not None else "-"

        for c in self.candidates:
            mark = "*" if c["id"] == self.winner else ""
            rows.append((f"{c['id']}{mark}", c["origin"] or "?", ",".join(map(str, c["parents"])) or "-",
                         cell(c, "train"), cell(c, "val")))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        stages = self.accounting.get("stages", {})
        if stages:
            lines.append("")
            lines.append("stage     metric calls  LM calls  tokens")
            for stage, d in stages.items():
                calls = sum(u["calls"] for u in d["roles"].values())
                tokens = sum(u["prompt_tokens"] + u["completion_tokens"] for u in d["roles"].values())
                lines.append(f"{stage:<9} {d['metric_calls']:>12}  {calls:>8}  {tokens:>6}")
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
