"""Persistence: atomic JSON writes, run fingerprints, checkpoints, save/load of programs, secrets kept out.

Every finished subset, merge node and valset score is written to ``log_dir`` as soon as it is done, so
a ``compile`` with the same ``log_dir`` and inputs continues where an interrupted run stopped (its
spent budget included). A run is identified by a fingerprint of its trainset, seed candidate, method,
configuration, metric (qualified name and source), task LM (model and settings) and partition; a
``log_dir`` holding another run is refused rather than silently mixed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import dspy

from .budget import spent_before
from .candidate import Candidate
from .merge import MergeNode
from .optimize import SubsetResult

logger = logging.getLogger("dspy." + __name__)

FORMAT = "dspy-fgo/program-v1"
CHECKPOINT_FORMAT = 2
_SECRET_KEY = re.compile(
    r"(api[_-]?key|authorization|proxy-authorization|x-api-key|token|access[_-]?token|[a-z_]*_token|secret|"
    r"client[_-]?secret|password|cookie|headers|extra_headers|default_headers)$", re.I)
_SECRET_TEXT = re.compile(r"(Bearer\s+[A-Za-z0-9._\-]{8,}|sk-[A-Za-z0-9_\-]{8,})")
REDACTED = "<redacted>"


# ----- secrets ---------------------------------------------------------------------------------------


def collect_secrets(lms: Iterable[Any]) -> list[str]:
    """The secret strings (API keys, header values) held by these LMs, to be masked wherever text leaves."""
    found: list[str] = []

    def walk(key: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{key}.{k}", v)
        elif isinstance(value, str) and len(value) >= 6 and _SECRET_KEY.search(key):
            found.append(value)
            found.extend(p for p in value.split() if len(p) >= 6)  # "Bearer <key>": the key alone too

    for lm in lms:
        for k, v in (getattr(lm, "kwargs", None) or {}).items():
            walk(k, v)
    return sorted(set(found), key=len, reverse=True)


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return _SECRET_TEXT.sub(REDACTED, text)


def scrub(data: Any, secrets: Sequence[str] = ()) -> Any:
    """``data`` without secret-named keys and with known secrets masked in every string."""
    if isinstance(data, dict):
        return {k: scrub(v, secrets) for k, v in data.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(data, list | tuple):
        return [scrub(v, secrets) for v in data]
    if isinstance(data, str):
        return redact(data, secrets)
    return data


# ----- files -----------------------------------------------------------------------------------------


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON so that a reader never sees a half-written file (even after SIGKILL).
    NaN and infinity are refused (they are not JSON)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def describe_callable(fn: Any) -> dict[str, str] | str | None:
    """A callable by qualified name and source hash (no memory addresses), for fingerprints."""
    if fn is None or isinstance(fn, str | int | float):
        return fn
    target = getattr(fn, "__func__", fn)
    name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__qualname__)}"
    try:
        source = inspect.getsource(target if inspect.isroutine(target) or inspect.isclass(target) else type(target))
    except (OSError, TypeError):
        source = ""
    return {"name": name, "source": hashlib.sha256(source.encode()).hexdigest()[:16]}


WHERE_SERVED = ("api_base", "base_url", "api_version")  # a local server's port changes per run, its answers do not


def describe_lm(lm: Any) -> dict[str, Any] | None:
    """An LM by class, model and settings, for fingerprints: not where it is served (a rerun of a local run
    gets a new port and must still resume)."""
    if lm is None:
        return None
    kwargs = scrub({k: v for k, v in dict(getattr(lm, "kwargs", None) or {}).items() if k not in WHERE_SERVED})
    return {"class": type(lm).__qualname__, "model": getattr(lm, "model", None), "settings": kwargs}


def fingerprint(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def examples_digest(examples: Sequence[dspy.Example]) -> list:
    return [[sorted((k, str(v)) for k, v in ex.items()), sorted(ex.inputs().keys())] for ex in examples]


# ----- checkpoints -----------------------------------------------------------------------------------


class Checkpoint:
    """The ``log_dir`` of one run: ``run.json`` (fingerprint), ``subsets/`` (finished subsets, and each unfinished
    one's progress after its last step), ``merges/``, ``valset/``,
    ``budget.json`` (what was spent), ``partition.json`` (``partition="failures"``, kept on resume)."""

    def __init__(self, log_dir: str | Path, run_fingerprint: str):
        self.root = Path(log_dir)
        self.fingerprint = run_fingerprint
        self.resumed = {"subsets": 0, "steps": 0, "merges": 0, "valset": 0}
        run_file = self.root / "run.json"
        if run_file.exists():
            if self._read(run_file).get("fingerprint") != run_fingerprint:
                raise ValueError(
                    f"log_dir {self.root} holds a run with another trainset, program, metric, task LM or "
                    "configuration. Use a new log_dir, or delete this one to start over."
                )
            logger.info("Resuming the run in %s", self.root)
        else:
            write_json_atomic(run_file, {"fingerprint": run_fingerprint, "format": CHECKPOINT_FORMAT})

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"Checkpoint file {path} is damaged ({type(exc).__name__}: {exc}). Delete that file to redo "
                f"just that step, or delete {self.root} to start the run over."
            ) from exc

    def spent(self) -> dict[str, Any] | None:
        path = self.root / "budget.json"
        return self._read(path) if path.exists() else None

    def save_spent(self, usage: dict[str, Any]) -> None:
        write_json_atomic(self.root / "budget.json", usage)

    # ----- subsets -----------------------------------------------------------------------------------

    def _subset_file(self, subset_id: int, kind: str = "") -> Path:
        return self.root / "subsets" / f"subset_{subset_id:05d}{kind}.json"

    def _read_subset(self, subset_id: int, indices: Sequence[int], kind: str = "") -> dict[str, Any] | None:
        """A subset's checkpoint (``kind`` "": finished, ".progress": after its last step), or None."""
        path = self._subset_file(subset_id, kind)
        if not path.exists():
            return None
        data = self._read(path)
        if data.get("indices") != list(indices):
            raise ValueError(f"Checkpoint {path} covers other examples than subset {subset_id}: delete {self.root}.")
        return data

    def load_subset(self, subset_id: int, indices: Sequence[int]) -> SubsetResult | None:
        if (data := self._read_subset(subset_id, indices)) is None:
            return None
        path = self._subset_file(subset_id)
        try:
            result = SubsetResult.from_dict(data)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"Checkpoint file {path} is damaged (missing {exc}). Delete that file to redo "
                             f"just that subset, or delete {self.root} to start over.") from exc
        self.resumed["subsets"] += 1
        return result

    def save_subset(self, result: SubsetResult) -> None:
        write_json_atomic(self._subset_file(result.subset_id), result.to_dict())
        self._subset_file(result.subset_id, ".progress").unlink(missing_ok=True)

    def load_progress(self, subset_id: int, indices: Sequence[int]) -> dict[str, Any] | None:
        """An unfinished subset's state after its last finished step (``optimize.JobProgress``), or None."""
        data = self._read_subset(subset_id, indices, ".progress")
        if data is not None:
            self.resumed["steps"] += len(data.get("steps", []))
        return data

    def save_progress(self, subset_id: int, data: dict[str, Any]) -> None:
        write_json_atomic(self._subset_file(subset_id, ".progress"), data)

    # ----- merge nodes -------------------------------------------------------------------------------

    @staticmethod
    def merge_key(members: Sequence[MergeNode]) -> str:
        """Content key of a merge: the same members always give the same key, whatever the node ids."""
        parts = sorted(json.dumps([m.candidate.to_dict(), m.indices], sort_keys=True) for m in members)
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]

    def load_merge(self, members: Sequence[MergeNode]) -> dict[str, Any] | None:
        path = self.root / "merges" / f"{self.merge_key(members)}.json"
        if not path.exists():
            return None
        data = self._read(path)
        self.resumed["merges"] += 1
        proposed = data.get("proposed")
        return {"candidate": Candidate(data["candidate"]), "score": data["score"], "note": data.get("note", ""),
                "proposed": Candidate(proposed) if proposed is not None else None,
                "proposed_score": data.get("proposed_score"), "estimated": bool(data.get("estimated", False))}

    def save_merge(self, members: Sequence[MergeNode], node: MergeNode) -> None:
        write_json_atomic(self.root / "merges" / f"{self.merge_key(members)}.json",
                          {"candidate": node.candidate.to_dict(), "score": node.score, "indices": node.indices,
                           "note": node.note, "proposed": node.proposed.to_dict() if node.proposed else None,
                           "proposed_score": node.proposed_score, "estimated": node.estimated})

    # ----- valset scores -----------------------------------------------------------------------------

    def _val_file(self, candidate: Candidate) -> Path:
        key = hashlib.sha256(json.dumps(candidate.to_dict(), sort_keys=True).encode()).hexdigest()[:24]
        return self.root / "valset" / f"{key}.json"

    def load_val(self, candidate: Candidate) -> float | None:
        path = self._val_file(candidate)
        if not path.exists():
            return None
        self.resumed["valset"] += 1
        return float(self._read(path)["score"])

    def save_val(self, candidate: Candidate, score: float) -> None:
        write_json_atomic(self._val_file(candidate), {"candidate": candidate.to_dict(), "score": score})


def fork_subsets(source_log_dir: str | Path, log_dir: str | Path) -> None:
    """Start ``log_dir`` from the divide and optimize stages of the run in ``source_log_dir``: its subsets,
    partition and valset scores, and its budget as spent when its merges began. A run in ``log_dir`` with
    other merge-stage settings (``prune_rules``, ``backtest``, ``merge_threshold``, ``valset_candidates``)
    then redoes only the merges and the final choice on the same subsets: a paired comparison of those
    settings without the subsets' LM noise. The caller vouches that the new run has the source's trainset,
    program, metric, LMs and subset-stage settings (``log_dir`` gets no ``run.json``: the new run writes its
    own fingerprint), so this is for comparing settings, not for resuming."""
    source, target = Path(source_log_dir), Path(log_dir)
    budget = source / "budget.json"
    if not (source / "subsets").is_dir() or not budget.exists():
        raise ValueError(f"{source} holds no finished subsets to fork (no subsets/ or budget.json)")
    spent = json.loads(budget.read_text())
    if not {"merge", "select"} & set(spent.get("stages", {})):
        raise ValueError(f"{source}'s run has not finished its subsets (no merge or select stage in budget.json)")
    if target.exists() and any(target.iterdir()):
        raise ValueError(f"{target} is not empty: fork into a new log_dir")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("subsets", "valset"):
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name)
    if (source / "partition.json").exists():
        shutil.copy2(source / "partition.json", target / "partition.json")
    write_json_atomic(target / "budget.json", spent_before(spent, "merge"))


# ----- programs --------------------------------------------------------------------------------------


def save_program(program: dspy.Module, path: str | Path) -> None:
    """Write ``program``'s DSPy state and its instructions and tool descriptions to one JSON file
    (API keys and auth headers of any LM set on the program are left out)."""
    secrets = collect_secrets(p.lm for _, p in program.named_predictors() if getattr(p, "lm", None) is not None)
    write_json_atomic(Path(path), {
        "format": FORMAT,
        "dspy_state": scrub(program.dump_state(), secrets),
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
