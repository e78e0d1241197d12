import itertools
import math

import dspy
import pytest
from fakes import FakeLM, exact_metric, rule_optimizer, uppercase_task, word_examples

from dspy_fgo import Candidate
from dspy_fgo.context import RunContext
from dspy_fgo.merge import LMMerger, MergeNode, kmeans_cluster, progressive_merge


def leaves(n):
    return [MergeNode(i, Candidate({"p": f"rule number {i} " + "word" * (i % 5)}), [2 * i, 2 * i + 1], 0.5, subset_id=i)
            for i in range(n)]


class CountingMerge:
    def __init__(self, threshold):
        self.threshold, self.groups = threshold, []
        self.ids = itertools.count(1000)

    def __call__(self, nodes):
        assert 2 <= len(nodes) <= self.threshold
        self.groups.append([n.node_id for n in nodes])
        return MergeNode(next(self.ids), nodes[0].candidate, sorted(i for n in nodes for i in n.indices), None,
                         list(nodes))


@pytest.mark.parametrize("n,threshold", [(n, 4) for n in range(1, 65)] + [(n, 2) for n in (2, 3, 5, 9, 17, 33, 64)])
def test_merge_tree_shape(n, threshold):
    merge = CountingMerge(threshold)
    root = progressive_merge(leaves(n), threshold, kmeans_cluster(0), merge)
    # every example covered exactly once at the root, and once per level below it
    assert root.indices == list(range(2 * n))
    for node in root.walk():
        if node.children:
            covered = [i for c in node.children for i in c.indices]
            assert sorted(covered) == node.indices and len(set(covered)) == len(covered)
            assert len(node.children) <= threshold
    # every leaf appears once
    assert sorted(x.node_id for x in root.walk() if x.is_leaf) == list(range(n))
    # depth grows like log log n: clusters of ~sqrt(n) until groups fit the threshold
    if n > threshold:
        assert root.depth() <= 2 * math.ceil(math.log2(max(2, math.log2(n)))) + 3
    if n == 1:
        assert root.depth() == 0 and not merge.groups
    if n <= threshold and n > 1:
        assert root.depth() == 1 and len(merge.groups) == 1


def test_depth_is_much_smaller_than_a_binary_tree_for_64_candidates():
    root = progressive_merge(leaves(64), 8, kmeans_cluster(0), CountingMerge(8))
    assert root.depth() <= 3


def test_merge_threshold_below_two_is_rejected():
    with pytest.raises(ValueError, match="merge_threshold"):
        progressive_merge(leaves(3), 1, kmeans_cluster(0), CountingMerge(1))


def test_lm_merge_back_tests_on_the_union_of_members():
    task, opt = FakeLM(uppercase_task), FakeLM(rule_optimizer)
    train = word_examples(8)
    engine = RunContext.create(dspy.Predict("question -> answer"), train, exact_metric, optimizer_lm=opt, task_lm=task)
    a = MergeNode(0, Candidate({"self": "Answer. Always answer in UPPERCASE."}), [0, 1, 2], 1.0, subset_id=0)
    b = MergeNode(1, Candidate({"self": "Answer briefly."}), [5, 6], 0.0, subset_id=1)
    node = LMMerger(engine, first_node_id=2)([a, b])
    asked = [r.fields["question"] for r in task.requests]
    # the best member (a) on the other member's examples, then the merge on the whole union
    assert sorted(asked) == sorted(train[i].question for i in [5, 6, 0, 1, 2, 5, 6])
    assert node.indices == [0, 1, 2, 5, 6] and node.children == [a, b] and node.node_id == 2
    assert "UPPERCASE" in node.candidate["self"] and node.score == 1.0
    merge_requests = [r for r in opt.requests if "merged_text" in r.outputs]
    assert len(merge_requests) == 1 and "score 1.00" in merge_requests[0].fields["versions"]


def test_a_merge_worse_than_its_best_member_on_the_union_is_not_passed_up():
    def bad_merge(request):
        return {"merged_text": "Answer in lowercase."} if "merged_text" in request.outputs else rule_optimizer(request)

    task, opt = FakeLM(uppercase_task), FakeLM(bad_merge)
    run = RunContext.create(dspy.Predict("question -> answer"), word_examples(8), exact_metric, optimizer_lm=opt,
                            task_lm=task)
    a = MergeNode(0, Candidate({"self": "Answer. Always answer in UPPERCASE."}), [0, 1, 2], 1.0, subset_id=0)
    b = MergeNode(1, Candidate({"self": "Answer in UPPERCASE, briefly."}), [5, 6], 1.0, subset_id=1)
    node = LMMerger(run, first_node_id=2)([a, b])
    assert node.candidate == a.candidate and node.score == 1.0
    assert "kept the member" in node.note and node.children == [a, b]
