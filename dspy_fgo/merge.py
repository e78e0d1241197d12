"""Algorithm 2: merge optimized candidates progressively.

While a group holds more than ``t`` candidates it is split into floor(sqrt(n)) clusters by KMeans over
candidate embeddings (TF-IDF of their texts) and each cluster is merged recursively; the merged
candidates then form the next, smaller group. A small group is merged with one LM call per differing
component, and every merged candidate is back-tested on the union of its members' examples.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .candidate import Candidate
from .divide import embed_texts, kmeans_labels, labels_to_partition
from .engine import Engine
from .executor import parallel_map
from .rollout import cut_middle, mean_score
from .signatures import MergeComponents

logger = logging.getLogger(__name__)


@dataclass
class MergeNode:
    """A candidate in the merge tree: a leaf is one subset's result, an inner node a merge of its children."""

    node_id: int
    candidate: Candidate
    indices: list[int]
    score: float | None
    children: list[MergeNode] = field(default_factory=list)
    subset_id: int | None = None
    categories: list[str] = field(default_factory=list)

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def depth(self) -> int:
        return 0 if self.is_leaf else 1 + max(c.depth() for c in self.children)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "subset_id": self.subset_id,
            "children": [c.node_id for c in self.children],
            "indices": list(self.indices),
            "categories": list(self.categories),
            "score": self.score,
            "candidate": self.candidate.to_dict(),
        }


ClusterFn = Callable[[Sequence[MergeNode], int], list[list[int]]]
MergeFn = Callable[[Sequence[MergeNode]], MergeNode]


def progressive_merge(nodes: Sequence[MergeNode], threshold: int, cluster: ClusterFn, merge: MergeFn,
                      num_threads: int = 1) -> MergeNode:
    """The root of the merge tree over ``nodes`` (pure structure: ``cluster`` and ``merge`` do the work)."""
    if threshold < 2:
        raise ValueError(f"merge_threshold must be >= 2, got {threshold}")
    nodes = list(nodes)
    if len(nodes) == 1:
        return nodes[0]
    if len(nodes) <= threshold:
        return merge(nodes)
    k = max(2, math.isqrt(len(nodes)))
    groups = [g for g in cluster(nodes, k) if g]
    if len(groups) < 2:  # clustering could not separate them: split evenly so the recursion shrinks
        groups = [list(range(i, len(nodes), k)) for i in range(k)]
    merged = parallel_map(
        lambda g: progressive_merge([nodes[i] for i in g], threshold, cluster, merge, num_threads),
        groups, num_threads, desc="merge",
    )
    return progressive_merge(merged, threshold, cluster, merge, num_threads)


def kmeans_cluster(seed: int = 0) -> ClusterFn:
    """Cluster candidates by KMeans over TF-IDF vectors of their texts, clusters capped at ceil(n/k)."""

    def cluster(nodes: Sequence[MergeNode], k: int) -> list[list[int]]:
        vectors = embed_texts([n.candidate.render() for n in nodes])
        return labels_to_partition(kmeans_labels(vectors, k, seed, balanced=True))

    return cluster


class LMMerger:
    """Merge a group with the merge LM (one call per component that differs), then back-test it."""

    def __init__(self, engine: Engine, first_node_id: int):
        self.engine = engine
        self._ids = itertools.count(first_node_id)

    def __call__(self, nodes: Sequence[MergeNode]) -> MergeNode:
        indices = sorted(i for n in nodes for i in n.indices)
        categories = sorted({c for n in nodes for c in n.categories})
        checkpoint = self.engine.checkpoint
        done = checkpoint.load_merge(nodes) if checkpoint is not None else None
        if done is not None:
            return MergeNode(next(self._ids), done[0], indices, done[1], list(nodes), None, categories)
        best = max(nodes, key=lambda n: n.score if n.score is not None else -1.0)
        if (reason := self.engine.accounting.over_budget()) is not None:
            logger.info("Budget reached (%s): node keeps its best member instead of merging", reason)
            return MergeNode(next(self._ids), best.candidate, indices, best.score, list(nodes), None, categories)
        candidate = self.merge_candidates(best.candidate, nodes)
        trajs = self.engine.evaluate(candidate, indices, desc="back-test")
        node = MergeNode(next(self._ids), candidate, indices, mean_score(trajs), list(nodes), None, categories)
        logger.info("Merged %d candidates -> node %d, back-test %.3f on %d examples",
                    len(nodes), node.node_id, node.score, len(indices))
        if checkpoint is not None:
            checkpoint.save_merge(nodes, node)
        return node

    def merge_candidates(self, base: Candidate, nodes: Sequence[MergeNode]) -> Candidate:
        """One merged text per component whose versions differ (components merge in parallel)."""
        differing = [name for name in base if len({n.candidate[name] for n in nodes}) > 1]
        merged = parallel_map(lambda name: self.merge_component(name, nodes), differing,
                              self.engine.num_threads, desc="merge components")
        updates = {name: text for name, text in zip(differing, merged, strict=True) if text}
        return base.updated(updates) if updates else base

    def merge_component(self, name: str, nodes: Sequence[MergeNode]) -> str | None:
        budget = self.engine.input_budget("merge")
        per_version = max(40, budget * 3 // len(nodes))  # ~3 characters a token
        versions = "\n\n".join(
            f"Version {i + 1}: optimized on {len(n.indices)} examples"
            + (f" ({', '.join(n.categories)})" if n.categories else "")
            + (f", score {n.score:.2f}" if n.score is not None else "")
            + f"\n{cut_middle(n.candidate[name], per_version)}"
            for i, n in enumerate(nodes)
        )
        out = self.engine.call(MergeComponents, "merge", component_name=name, versions=versions)
        return str(out.merged_text).strip() if out is not None and out.get("merged_text") else None
