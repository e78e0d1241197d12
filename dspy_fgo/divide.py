"""Divide: split a trainset into disjoint subsets that cover it (random, by an example field, clustered, or
by failure pattern: ``failures.py``)."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import dspy
import numpy as np

logger = logging.getLogger("dspy." + __name__)

Partition = list[list[int]]


def divide(
    examples: Sequence[dspy.Example],
    strategy: str | Callable = "random",
    num_subsets: int | None = None,
    subset_size: int | None = None,
    seed: int = 0,
    embedder: Callable | None = None,
) -> Partition:
    """Indices of ``examples`` split into disjoint, covering, non-empty subsets; deterministic for a seed.

    ``strategy``: ``"random"`` (balanced sizes), ``"cluster"`` (KMeans over TF-IDF of the inputs, or over
    ``embedder`` vectors when given), the name of an example field (one subset per value, large groups
    split further when ``num_subsets``/``subset_size`` ask for more), or a callable
    ``(examples) -> list of subsets of indices`` (or one label per example).
    """
    n = len(examples)
    k = resolve_num_subsets(n, num_subsets, subset_size)
    if callable(strategy):
        parts = _from_callable(strategy, examples)
    elif strategy == "random":
        parts = random_partition(n, k, seed)
    elif strategy == "cluster":
        parts = cluster_partition(example_texts(examples), k, seed, embedder)
    elif strategy == "failures":
        raise ValueError("partition='failures' runs the seed program and critiques its failures: it is FGO's "
                         "(FGO(partition='failures').compile), not divide()'s")
    elif isinstance(strategy, str):
        parts = field_partition(examples, strategy, k, seed)
    else:
        raise ValueError(f"partition must be 'random', 'cluster', 'failures', a field name or a callable, got "
                         f"{strategy!r}")
    check_partition(parts, n)
    return parts


def resolve_num_subsets(n: int, num_subsets: int | None, subset_size: int | None) -> int:
    if n == 0:
        raise ValueError("The trainset is empty: pass at least one dspy.Example.")
    if num_subsets is not None and subset_size is not None:
        raise ValueError("Give num_subsets or subset_size, not both.")
    if subset_size is not None:
        if subset_size < 1:
            raise ValueError(f"subset_size must be >= 1, got {subset_size}")
        return max(1, -(-n // subset_size))
    k = num_subsets if num_subsets is not None else max(1, min(8, n // 4))
    if k < 1:
        raise ValueError(f"num_subsets must be >= 1, got {k}")
    if k > n:
        raise ValueError(
            f"num_subsets={k} is more than the {n} training examples: lower num_subsets or add examples."
        )
    return k


def random_partition(n: int, k: int, seed: int) -> Partition:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


def field_partition(examples: Sequence[dspy.Example], key: str, k: int, seed: int) -> Partition:
    """One subset per value of ``example[key]``; groups larger than n/k are split into balanced parts."""
    missing = [i for i, ex in enumerate(examples) if key not in ex]
    if missing:
        raise ValueError(
            f"partition={key!r}: {len(missing)} examples have no field {key!r} (first: index {missing[0]}). "
            "Use 'random', 'cluster', or a field every example has."
        )
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        groups[str(ex[key])].append(i)
    target = max(1, -(-len(examples) // k))
    parts: Partition = []
    for value in sorted(groups):
        members = groups[value]
        pieces = max(1, round(len(members) / target)) if len(groups) < k else 1
        for piece in random_partition(len(members), pieces, seed):
            parts.append(sorted(members[i] for i in piece))
    return parts


def cluster_partition(texts: Sequence[str], k: int, seed: int, embedder: Callable | None = None) -> Partition:
    vectors = embed_texts(texts, embedder)
    labels = kmeans_labels(vectors, k, seed)
    return labels_to_partition(labels)


def embed_texts(texts: Sequence[str], embedder: Callable | None = None) -> np.ndarray:
    """Rows of vectors: ``embedder(texts)`` (e.g. a ``dspy.Embedder``) or TF-IDF."""
    if embedder is not None:
        return np.asarray(embedder(list(texts)), dtype=float)
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        return TfidfVectorizer(max_features=4096, sublinear_tf=True).fit_transform(texts).toarray()
    except ValueError:  # empty vocabulary: every text empty or stop words only
        return np.zeros((len(texts), 1))


def kmeans_labels(vectors: np.ndarray, k: int, seed: int, balanced: bool = False) -> list[int]:
    """KMeans cluster label per row; never more clusters than rows. ``balanced`` caps every cluster at
    ceil(n / k) rows (points go to their nearest center with room), so recursive splits stay shallow."""
    from sklearn.cluster import KMeans

    n = len(vectors)
    k = max(1, min(k, n))
    if k == 1:
        return [0] * n
    distinct = len({tuple(np.round(v, 8)) for v in vectors})
    if distinct < k:  # KMeans cannot make k clusters of identical points: fall back to a balanced split
        return [i % k for i in range(n)]
    model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(vectors)
    if not balanced:
        return [int(x) for x in model.labels_]
    return _capacity_assign(model.transform(vectors), capacity=-(-n // k))


def _capacity_assign(distances: np.ndarray, capacity: int) -> list[int]:
    """Each row to its nearest center that still has room, most confident rows first."""
    order = np.argsort(distances.min(axis=1))
    room = [capacity] * distances.shape[1]
    labels = [0] * len(distances)
    for row in order:
        for center in np.argsort(distances[row]):
            if room[center]:
                labels[row], room[center] = int(center), room[center] - 1
                break
    return labels


def labels_to_partition(labels: Sequence[Any]) -> Partition:
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        groups[label].append(i)
    return [groups[label] for label in sorted(groups, key=lambda g: groups[g][0])]


def example_texts(examples: Sequence[dspy.Example]) -> list[str]:
    return ["\n".join(f"{k}: {v}" for k, v in ex.inputs().items()) for ex in examples]


def _from_callable(fn: Callable, examples: Sequence[dspy.Example]) -> Partition:
    result = list(fn(list(examples)))
    if len(result) == len(examples) and not any(isinstance(r, list | tuple | set) for r in result):
        return labels_to_partition(result)
    return [sorted(int(i) for i in part) for part in result]


def check_partition(parts: Partition, n: int) -> None:
    """Raise ``ValueError`` unless ``parts`` are non-empty, disjoint and cover ``range(n)``."""
    flat = [i for part in parts for i in part]
    if any(not part for part in parts):
        raise ValueError("The partition has an empty subset.")
    if len(flat) != len(set(flat)):
        raise ValueError("The partition's subsets overlap: every example must be in exactly one subset.")
    if set(flat) != set(range(n)):
        raise ValueError(f"The partition does not cover the trainset exactly ({len(set(flat))} of {n} indices).")


class DivideSchedule:
    """FGO's data schedule: one job per subset of the partition, each the same batch for ``epochs`` steps.
    With ``partition="failures"`` each job also carries the seed's runs on its subset (its first step's)."""

    def __init__(self, partition: str | Callable = "random", num_subsets: int | None = None,
                 subset_size: int | None = None, embedder: Callable | None = None):
        self.partition, self.num_subsets, self.subset_size, self.embedder = partition, num_subsets, subset_size, embedder
        self._partition: tuple[Sequence[dspy.Example], Partition] | None = None

    def jobs(self, run, epochs: int, threads: int) -> list:
        runs: list = []
        if self.partition == "failures":
            from .failures import failure_partition

            k = resolve_num_subsets(len(run.trainset), self.num_subsets, self.subset_size)
            parts, runs = failure_partition(run, k, threads, self.embedder)
        else:
            parts = self._parts(run)
        logger.info("FGO: %d subsets of sizes %s", len(parts), [len(p) for p in parts])
        return self._jobs(parts, epochs, threads, runs)

    def plan(self, run, epochs: int) -> list:
        """The jobs :meth:`jobs` will make, without LM work: for ``partition="failures"`` (which needs the
        seed's runs and critiques) a random partition into as many subsets stands in."""
        if self.partition == "failures":
            k = resolve_num_subsets(len(run.trainset), self.num_subsets, self.subset_size)
            return self._jobs(random_partition(len(run.trainset), k, run.random_seed), epochs, 1, [])
        return self._jobs(self._parts(run), epochs, 1, [])

    def _parts(self, run) -> Partition:
        """The partition (computed once per schedule: a callable partition is not asked twice)."""
        if self._partition is None or self._partition[0] is not run.trainset:
            self._partition = (run.trainset, divide(run.trainset, self.partition, self.num_subsets, self.subset_size,
                                                    run.random_seed, self.embedder))
        return self._partition[1]

    @staticmethod
    def _jobs(parts: Partition, epochs: int, threads: int, runs: list) -> list:
        from .feedback import OverflowPolicy
        from .optimize import Job

        inner = -(-threads // max(1, min(threads, len(parts))))  # ceil: no idle slots when subsets < threads
        return [Job(i, tuple(p), (tuple(p),) * epochs, tuple(range(epochs)), True, OverflowPolicy("summarize"), inner,
                    tuple(runs[j] for j in p) if runs else ()) for i, p in enumerate(parts)]


def sample_indices(examples: Sequence[dspy.Example], n: int, seed: int, key: str | None = None) -> list[int]:
    """``n`` indices of ``examples`` (sorted), drawn without replacement; with ``key`` (a field every example
    has) each value keeps its share, so a sample of a category-partitioned trainset keeps every category."""
    rng = random.Random(seed)
    if key is None or any(key not in ex for ex in examples):
        return sorted(rng.sample(range(len(examples)), n))
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        groups[str(ex[key])].append(i)
    for members in groups.values():
        rng.shuffle(members)
    queues = [groups[value] for value in sorted(groups)]
    picked: list[int] = []
    while len(picked) < n:  # round-robin over the values: the sample is as balanced as the groups allow
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(queue.pop())
    return sorted(picked)
