"""Checkpoints: every finished subset and merge node is written to ``log_dir`` as soon as it is done,
so a ``compile`` with the same ``log_dir`` and inputs continues where an interrupted run stopped.

A run is identified by a fingerprint of its trainset, seed candidate, method, configuration and LMs;
a ``log_dir`` holding another run is refused rather than silently mixed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dspy

from .candidate import Candidate
from .merge import MergeNode
from .optimize import StepRecord, SubsetResult

logger = logging.getLogger(__name__)


def fingerprint(method: str, config: dict[str, Any], trainset: Sequence[dspy.Example], seed: Candidate) -> str:
    payload = {
        "method": method,
        "config": {k: v for k, v in config.items() if k not in ("log_dir", "num_threads")},
        "trainset": [sorted((k, str(v)) for k, v in ex.items()) for ex in trainset],
        "inputs": [sorted(ex.inputs().keys()) for ex in trainset],
        "seed": seed.to_dict(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON so that a reader never sees a half-written file (even after SIGKILL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, ensure_ascii=False, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Checkpoint:
    """The ``log_dir`` of one run: ``run.json`` (fingerprint), ``subsets/``, ``merges/``."""

    def __init__(self, log_dir: str | Path, run_fingerprint: str):
        self.root = Path(log_dir)
        self.fingerprint = run_fingerprint
        self.resumed_subsets = 0
        self.resumed_merges = 0
        run_file = self.root / "run.json"
        if run_file.exists():
            stored = json.loads(run_file.read_text()).get("fingerprint")
            if stored != run_fingerprint:
                raise ValueError(
                    f"log_dir {self.root} holds a run with another trainset, program or configuration. "
                    "Use a new log_dir, or delete this one to start over."
                )
            logger.info("Resuming the run in %s", self.root)
        else:
            write_json_atomic(run_file, {"fingerprint": run_fingerprint})

    # ----- subsets -----------------------------------------------------------------------------------

    def _subset_file(self, subset_id: int) -> Path:
        return self.root / "subsets" / f"subset_{subset_id:05d}.json"

    def load_subset(self, subset_id: int, indices: Sequence[int]) -> SubsetResult | None:
        path = self._subset_file(subset_id)
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        if data["indices"] != list(indices):
            raise ValueError(f"Checkpoint {path} covers other examples than subset {subset_id}: delete {self.root}.")
        self.resumed_subsets += 1
        return subset_from_dict(data)

    def save_subset(self, result: SubsetResult) -> None:
        write_json_atomic(self._subset_file(result.subset_id), result.to_dict() | {
            "seed_candidate": result.seed_candidate.to_dict()})

    # ----- merge nodes -------------------------------------------------------------------------------

    @staticmethod
    def merge_key(members: Sequence[MergeNode]) -> str:
        """Content key of a merge: the same members always give the same key, whatever the node ids."""
        parts = sorted(json.dumps([m.candidate.to_dict(), m.indices], sort_keys=True) for m in members)
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]

    def load_merge(self, members: Sequence[MergeNode]) -> tuple[Candidate, float | None] | None:
        path = self.root / "merges" / f"{self.merge_key(members)}.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        self.resumed_merges += 1
        return Candidate(data["candidate"]), data["score"]

    def save_merge(self, members: Sequence[MergeNode], node: MergeNode) -> None:
        write_json_atomic(self.root / "merges" / f"{self.merge_key(members)}.json",
                          {"candidate": node.candidate.to_dict(), "score": node.score, "indices": node.indices})


def subset_from_dict(data: dict[str, Any]) -> SubsetResult:
    steps = [StepRecord(s["epoch"], tuple(s["indices"]), s["score_before"], tuple(s["changed"]), s["score_after"])
             for s in data["history"]]
    best = Candidate(data["best_candidate"])
    return SubsetResult(data["subset_id"], list(data["indices"]), Candidate(data.get("seed_candidate", best)),
                        best, data["best_score"], steps, data.get("stopped"))
