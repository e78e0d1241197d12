"""Algorithm 2: merge optimized candidates progressively.

While a group holds more than ``t`` candidates it is split into floor(sqrt(n)) clusters by KMeans over
candidate embeddings (TF-IDF of their texts) and each cluster is merged recursively; the merged
candidates then form the next, smaller group. A small group is merged with one LM call per differing
component, and every merged candidate is back-tested on the union of its members' examples. A merge
that scores below its best member on the union is not passed up: the member is (``note`` says so).
``backtest="race"`` stops a back-test early on a merge that is clearly worse, ``"half"`` also decides
on half of the union (``backtest.py``);
``prune_rules=True`` ablates an accepted rules merge rule by rule on the union (``prune.py``), ``"all"`` also
a merge that lost, which is then passed up if its pruned text scores at least as well as the member.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .backtest import backtest_share, race, scores_on, slices_for
from .budget import BudgetExhausted, cut_to_tokens
from .candidate import Candidate
from .compat import merge_levels
from .divide import embed_texts, kmeans_labels, labels_to_partition
from .executor import parallel_map
from .prune import prune_rules
from .rules import join_rules, split_rules, union_rules
from .signatures import MergeComponents

if TYPE_CHECKING:
    from .context import RunContext

logger = logging.getLogger("dspy." + __name__)


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
    note: str = ""  # why this node holds the candidate it holds (e.g. a member kept over a worse merge)
    proposed: Candidate | None = None  # the merged candidate, also when a better member was kept instead
    proposed_score: float | None = None  # its back-test score on the union
    estimated: bool = False  # a race stopped early: score and proposed_score are means on a slice of the union

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def depth(self) -> int:
        return 0 if self.is_leaf else 1 + max(c.depth() for c in self.children)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    @classmethod
    def from_dict(cls, data: dict[str, Any], by_id: dict[int, MergeNode]) -> MergeNode:
        """A node from :meth:`to_dict`, its children looked up in ``by_id`` (built bottom-up)."""
        proposed = data.get("proposed")
        return cls(data["node_id"], Candidate(data["candidate"]), list(data["indices"]), data["score"],
                   [by_id[c] for c in data["children"]], data.get("subset_id"), list(data.get("categories", [])),
                   data.get("note", ""), Candidate(proposed) if proposed is not None else None,
                   data.get("proposed_score"), bool(data.get("estimated", False)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "subset_id": self.subset_id,
            "children": [c.node_id for c in self.children],
            "indices": list(self.indices),
            "categories": list(self.categories),
            "score": self.score,
            "note": self.note,
            "candidate": self.candidate.to_dict(),
            "proposed": self.proposed.to_dict() if self.proposed is not None else None,
            "proposed_score": self.proposed_score,
            "estimated": self.estimated,
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
    """Merge a group with the merge LM (one call per component that differs), back-test it on the union,
    and pass up the merge only when it scores at least as well there as the best member."""

    def __init__(self, run: RunContext, first_node_id: int, threads: int = 1, levels: int = 1, examples: int = 0):
        self.run, self.threads = run, threads
        self._ids = itertools.count(first_node_id)
        # pruning leaves the budget's plan for the merges above untouched: 2 * examples runs per level
        self.levels, self.examples = levels, examples

    def __call__(self, nodes: Sequence[MergeNode]) -> MergeNode:
        indices = sorted(i for n in nodes for i in n.indices)
        categories = sorted({c for n in nodes for c in n.categories})
        checkpoint = self.run.checkpoint
        done = checkpoint.load_merge(nodes) if checkpoint is not None else None
        if done is not None:
            return MergeNode(next(self._ids), done["candidate"], indices, done["score"], list(nodes), None,
                             categories, done["note"], done.get("proposed"), done.get("proposed_score"),
                             done.get("estimated", False))
        best = max(nodes, key=lambda n: n.score if n.score is not None else -1.0)
        try:
            tested = self._merge_and_test(best, nodes, indices)
        except BudgetExhausted as exc:
            logger.info("Budget reached (%s): node keeps its best member instead of merging", exc.reason)
            return MergeNode(next(self._ids), best.candidate, indices, best.score, list(nodes), None, categories,
                             f"budget reached ({exc.reason}): kept member {best.node_id} unmerged")
        node = MergeNode(next(self._ids), indices=indices, children=list(nodes), categories=categories, **tested)
        logger.info("Merge node %d over %d members: %s", node.node_id, len(nodes), node.note)
        if checkpoint is not None:
            checkpoint.save_merge(nodes, node)
            checkpoint.save_spent(self.run.budget.to_dict())
        return node

    def _merge_and_test(self, best: MergeNode, nodes: Sequence[MergeNode], indices: list[int]) -> dict[str, Any]:
        """The node's fields: the merged candidate and its union score, or the best member's when the merge
        is worse (``proposed`` is the merge either way); with ``prune_rules`` an accepted merge then loses the
        rules that do not help on the union (``prune.py``), and with ``prune_rules="all"`` a merge that lost is
        pruned too and passed up when it then scores at least as well as the member. Returned, not kept on
        ``self``: merges run on threads."""
        tested = self._back_tested_merge(best, nodes, indices)
        merged, lost = tested.get("proposed"), tested["candidate"] != tested.get("proposed")
        if not self.run.prune_rules or merged is None or (lost and self.run.prune_rules != "all"):
            return tested
        above = self.levels - (1 + max(n.depth() for n in nodes))
        keep = math.ceil(2 * self.examples * max(0, above) * backtest_share(self.run.backtest))
        cap = math.ceil(len(indices) * backtest_share(self.run.backtest)) if self.run.in_rounds else None
        start = tested["proposed_score"] if lost else tested["score"]
        pruned = prune_rules(self.run, merged, indices, start, self.threads, keep=keep,
                             strata=[n.indices for n in nodes], max_runs=cap)
        if pruned.candidate != merged:
            self.run.ledger.link(pruned.candidate, [merged], f"rule ablation of the merge: {pruned.note()}")
        if lost and (pruned.candidate == merged or pruned.score < tested["score"]):
            verdict = f"still below member {best.node_id}'s {tested['score']:.3f}" if pruned.tried else ""
            return {**tested, "note": "; ".join(filter(None, (tested["note"], pruned.note(), verdict)))}
        verdict = f"the pruned merge scores {pruned.score:.3f} >= member {best.node_id}'s {tested['score']:.3f}: " \
                  "passed up" if lost else ""
        return {**tested, "candidate": pruned.candidate, "score": pruned.score,
                "note": "; ".join(filter(None, (tested["note"], pruned.note(), verdict)))}

    def _back_tested_merge(self, best: MergeNode, nodes: Sequence[MergeNode], indices: list[int]) -> dict[str, Any]:
        candidate = self.merge_candidates(best.candidate, nodes)
        if candidate not in {n.candidate for n in nodes}:
            self.run.ledger.link(candidate, [n.candidate for n in nodes],
                                 "merge of nodes " + ",".join(str(n.node_id) for n in nodes))
        if self.run.backtest != "full" and candidate != best.candidate:
            raced = race(self.run, candidate, best, indices, self.threads, strata=[n.indices for n in nodes],
                         fractions=slices_for(self.run.backtest))
            kept = {"candidate": candidate, "score": raced.merged_score} if raced.accepted else \
                {"candidate": best.candidate, "score": raced.member_score}
            return {**kept, "note": raced.note(best.node_id), "proposed": candidate,
                    "proposed_score": raced.merged_score, "estimated": raced.sampled}
        rest = [i for i in indices if i not in set(best.indices)]
        member_score, runs = self._union_score(best, rest, len(indices))
        if candidate == best.candidate:
            return {"candidate": best.candidate, "score": member_score,
                    "note": f"merge changed nothing: member {best.node_id} ({member_score:.3f})"}
        merged_scores, merged_runs = scores_on(self.run, candidate, indices, self.threads)
        merged = sum(merged_scores.values()) / len(indices)
        runs += merged_runs
        tested = {"proposed": candidate, "proposed_score": merged}
        if merged < member_score:
            return {**tested, "candidate": best.candidate, "score": member_score,
                    "note": f"merge scored {merged:.3f} < member {best.node_id}'s {member_score:.3f} on the union: "
                            f"kept the member ({runs} back-test runs)"}
        return {**tested, "candidate": candidate, "score": merged,
                "note": f"merged: {merged:.3f} >= best member's {member_score:.3f} on the union ({runs} back-test runs)"}

    def _union_score(self, member: MergeNode, rest: list[int], total: int) -> tuple[float, int]:
        """``member``'s score on the union (its own score on its examples, a back-test on the others') and
        the runs that took; a candidate's runs already in the ledger (the seed's, say) are not made again."""
        own, runs = member.score, 0
        if own is None:
            own_scores, runs = scores_on(self.run, member.candidate, member.indices, self.threads)
            own = sum(own_scores.values()) / len(member.indices)
        if not rest:
            return own, runs
        others, more = scores_on(self.run, member.candidate, rest, self.threads)
        return (own * len(member.indices) + sum(others.values())) / total, runs + more

    def merge_candidates(self, base: Candidate, nodes: Sequence[MergeNode]) -> Candidate:
        """One merged text per component whose versions differ (components merge in parallel); with
        ``update="rules"`` the union of the members' rules, best-scoring member first (an LM merge only
        when the union is over the length cap)."""
        differing = [name for name in base if len({n.candidate[name] for n in nodes}) > 1]
        merge_one = self.union_component if self.run.update == "rules" else self.merge_component
        merged = parallel_map(lambda name: merge_one(name, nodes), differing, self.threads,
                              desc="merge components")
        updates = {name: text for name, text in zip(differing, merged, strict=True) if text}
        return base.updated(updates) if updates else base

    def union_component(self, name: str, nodes: Sequence[MergeNode]) -> str | None:
        ranked = sorted(nodes, key=lambda n: -(n.score if n.score is not None else -1.0))
        base = split_rules(ranked[0].candidate[name])[0]
        text = join_rules(base, union_rules(split_rules(n.candidate[name])[1] for n in ranked))
        if self.run.tokens(text, "merge") <= self.run.max_component_tokens:
            return text
        logger.info("Union of rules for %s is over max_component_tokens: merged by the LM", name)
        return self.merge_component(name, nodes)

    def merge_component(self, name: str, nodes: Sequence[MergeNode]) -> str | None:
        from .feedback import accept_text

        model = self.run.lms["merge"].model
        per_version = max(40, self.run.input_budget("merge") // len(nodes) - 30)
        versions = "\n\n".join(
            f"Version {i + 1}: optimized on {len(n.indices)} examples"
            + (f" ({', '.join(n.categories)})" if n.categories else "")
            + (f", score {n.score:.2f}" if n.score is not None else "")
            + f"\n{cut_to_tokens(n.candidate[name], per_version, model)}"
            for i, n in enumerate(nodes)
        )
        out = self.run.call(MergeComponents, "merge", component_name=name, versions=versions)
        return accept_text(self.run, "merge", name, out.get("merged_text") if out is not None else None)


class ProgressiveMerger:
    """Algorithm 2 as the pipeline's merge strategy (``clustering="none"`` merges all leaves at once)."""

    def __init__(self, threshold: int = 4, clustering: str = "kmeans"):
        self.threshold, self.clustering = threshold, clustering

    def merge(self, run: RunContext, leaves: Sequence[MergeNode], threads: int) -> MergeNode | None:
        if not leaves:
            return None
        threshold = self.threshold if self.clustering == "kmeans" else len(leaves)
        merger = LMMerger(run, first_node_id=max(n.node_id for n in leaves) + 1, threads=threads,
                          levels=merge_levels(len(leaves), threshold), examples=sum(len(n.indices) for n in leaves))
        if self.clustering == "none" and len(leaves) > 1:
            return merger(leaves)
        return progressive_merge(leaves, self.threshold, kmeans_cluster(run.random_seed), merger, threads)


class NoMerge:
    """The baselines' merge strategy: their one leaf is the root."""

    def merge(self, run: RunContext, leaves: Sequence[MergeNode], threads: int) -> MergeNode | None:
        return leaves[0] if leaves else None
