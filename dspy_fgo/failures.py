"""Divide by failure pattern (``partition="failures"``): one subset per way the seed program fails.

The seed runs once on the whole trainset; the evaluator LM critiques each failed run (with
``feedback="raw"``: the metric's feedback and the prediction stand in for a critique); the critiques
are embedded (TF-IDF, or ``embedder``) and KMeans puts them in at most k clusters, one subset per
failure mode. The successful runs are dealt round-robin over the subsets in a seeded order, so each
subset also sees what works. Without failures the partition is the random one. The seed's runs are
handed to the subsets' first steps (:attr:`Job.first`), so the divide stage costs no extra metric
calls; the critiques are the same prompts the first steps send, which DSPy's cache answers for free.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .budget import BudgetExhausted
from .divide import Partition, check_partition, embed_texts, kmeans_labels, random_partition
from .feedback import critique_trajectories
from .persist import write_json_atomic
from .rollout import Trajectory

if TYPE_CHECKING:
    from .context import RunContext

logger = logging.getLogger("dspy." + __name__)


def failure_partition(run: RunContext, k: int, threads: int = 1,
                      embedder: Callable | None = None) -> tuple[Partition, list[Trajectory]]:
    """The partition, and the seed's runs on the trainset by index (empty when they were not run)."""
    n, seed = len(run.trainset), run.random_seed
    saved = _load(run)
    if saved is not None:  # a resumed run keeps its partition: a new critique could redraw it
        return saved, []
    try:
        runs = run.evaluate(run.seed, range(n), threads=threads, desc="failures: seed on the trainset")
        failed = [t for t in runs if t.failed]
        if not failed:
            logger.info("partition='failures': the seed program fails on none of the %d examples: random "
                        "partition instead", n)
            return _save(run, random_partition(n, k, seed)), runs
        texts = failure_texts(run, failed, threads)
    except BudgetExhausted as exc:
        logger.info("partition='failures': budget spent while reading the seed's failures (%s): random "
                    "partition instead", exc.reason)
        return random_partition(n, k, seed), []
    vectors = embed_texts(texts, embedder)
    k_fail = min(k, len({tuple(np.round(v, 8)) for v in vectors}))  # never more modes than distinct failures
    labels = kmeans_labels(vectors, k_fail, seed)
    modes = sorted(set(labels), key=labels.index)
    parts = [[failed[j].index for j in range(len(failed)) if labels[j] == m] for m in modes]
    successes = [t.index for t in runs if not t.failed]
    random.Random(seed).shuffle(successes)
    for j, i in enumerate(successes):
        parts[j % len(parts)].append(i)
    parts = [sorted(p) for p in parts]
    check_partition(parts, n)
    terms = top_terms(texts, labels)
    logger.info("partition='failures': the seed fails on %d of %d examples, %d failure modes", len(failed), n,
                len(modes))
    for s, m in enumerate(modes):
        members = [failed[j].index for j in range(len(failed)) if labels[j] == m]
        logger.info("  subset %d: failures %s (%s) + %d successes", s, members, ", ".join(terms[m]) or "-",
                    len(parts[s]) - len(members))
    return _save(run, parts), runs


def failure_texts(run: RunContext, failed: Sequence[Trajectory], threads: int = 1) -> list[str]:
    """What each failure is about: the evaluator LM's critique, or with ``feedback="raw"`` the metric's
    feedback (or the run's error) and the prediction."""
    if run.feedback != "raw":
        return list(critique_trajectories(run, run.seed, failed, threads))
    return ["\n".join([t.feedback or t.error or ""] + [f"{k}: {v}" for k, v in (t.prediction or {}).items()])
            for t in failed]


def top_terms(texts: Sequence[str], labels: Sequence[int], n: int = 5) -> dict[int, list[str]]:
    """The ``n`` heaviest TF-IDF terms (English stop words left out) of each cluster's texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
        matrix = vectorizer.fit_transform(texts).toarray()
    except ValueError:  # no words left
        return {label: [] for label in labels}
    words = vectorizer.get_feature_names_out()
    out = {}
    for label in set(labels):
        weight = matrix[[i for i, x in enumerate(labels) if x == label]].mean(axis=0)
        out[label] = [str(words[i]) for i in np.argsort(-weight, kind="stable")[:n] if weight[i] > 0]
    return out


def _load(run: RunContext) -> Partition | None:
    path = run.checkpoint.root / "partition.json" if run.checkpoint is not None else None
    if path is None or not path.exists():
        return None
    parts = [list(p) for p in json.loads(path.read_text())["subsets"]]
    check_partition(parts, len(run.trainset))
    logger.info("partition='failures': the partition of %s is kept (%d subsets)", path, len(parts))
    return parts


def _save(run: RunContext, parts: Partition) -> Partition:
    if run.checkpoint is not None:
        write_json_atomic(run.checkpoint.root / "partition.json", {"strategy": "failures", "subsets": parts})
        run.checkpoint.save_spent(run.budget.to_dict())
    return parts
