"""Ledger: every candidate the run produced, where it came from, and its score on each example it ran on.

The pipeline writes to it at two edges: :meth:`RunContext.evaluate` records scores (and, with
``track_best_outputs``, the best prediction per example), and the optimize and merge stages record
lineage (a proposal's parent, a merge's members). :class:`FGOResult` carries its table.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from .candidate import Candidate
from .executor import Shippable


class Ledger(Shippable):
    def __init__(self, seed: Candidate | None = None, keep_outputs: bool = False):
        self._lock = threading.Lock()
        self.keep_outputs = keep_outputs
        self._ids: dict[Candidate, int] = {}
        self.entries: list[dict[str, Any]] = []
        self.best_outputs: dict[str, dict[int, dict[str, Any]]] = {"train": {}, "val": {}}
        if seed is not None:
            self.link(seed, (), "seed")

    def _id(self, candidate: Candidate, origin: str = "") -> int:
        if candidate not in self._ids:
            self._ids[candidate] = len(self.entries)
            self.entries.append({"id": len(self.entries), "origin": origin, "parents": [],
                                 "candidate": candidate.to_dict(), "scores": {"train": {}, "val": {}}})
        return self._ids[candidate]

    def id_of(self, candidate: Candidate) -> int | None:
        with self._lock:
            return self._ids.get(candidate)

    def scores(self, candidate: Candidate, split: str = "train") -> dict[int, float]:
        """``candidate``'s recorded score per example index (empty for a candidate never run)."""
        with self._lock:
            cid = self._ids.get(candidate)
            return dict(self.entries[cid]["scores"][split]) if cid is not None else {}

    def link(self, candidate: Candidate, parents: Sequence[Candidate], origin: str) -> None:
        """``candidate`` came from ``parents`` (a proposal: one parent; a merge: its members)."""
        with self._lock:
            cid = self._id(candidate, origin)
            entry = self.entries[cid]
            entry["origin"] = entry["origin"] or origin
            for parent in parents:
                pid = self._id(parent)
                if pid != cid and pid not in entry["parents"]:
                    entry["parents"].append(pid)

    def record(self, candidate: Candidate, split: str, trajectories: Sequence[Any]) -> None:
        with self._lock:
            scores = self.entries[self._id(candidate)]["scores"][split]
            for t in trajectories:
                scores[t.index] = t.score
                if self.keep_outputs and t.prediction is not None:
                    best = self.best_outputs[split].get(t.index)
                    if best is None or t.score > best["score"]:
                        self.best_outputs[split][t.index] = {"score": t.score, "prediction": dict(t.prediction),
                                                             "candidate": self._ids[candidate]}

    def record_scores(self, candidate: Candidate, split: str, scores: dict[int, float]) -> None:
        """Scores measured before (a resumed run's checkpoint), so that later stages reuse them."""
        with self._lock:
            self.entries[self._id(candidate)]["scores"][split].update(scores)

    def merge_from(self, entries: Sequence[dict[str, Any]]) -> None:
        """Add what a copy of this ledger (a Ray worker's) recorded: lineage and scores, by candidate text."""
        by_id = {e["id"]: Candidate(e["candidate"]) for e in entries}
        for e in entries:
            self.link(by_id[e["id"]], [by_id[p] for p in e["parents"]], e["origin"])
            with self._lock:
                mine = self.entries[self._ids[by_id[e["id"]]]]["scores"]
                for split, scores in e["scores"].items():
                    mine[split].update(scores)

    def to_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [_public(e) for e in self.entries]


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    out = dict(entry, parents=list(entry["parents"]))
    out["scores"] = {split: dict(sorted(s.items())) for split, s in entry["scores"].items()}
    for split, s in entry["scores"].items():
        out[f"{split}_mean"] = sum(s.values()) / len(s) if s else None
    return out
