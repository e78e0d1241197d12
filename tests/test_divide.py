import dspy
import pytest
from fakes import word_examples

from dspy_fgo.divide import check_partition, divide


def _flat(parts):
    return sorted(i for p in parts for i in p)


@pytest.mark.parametrize("strategy", ["random", "cluster", "category"])
@pytest.mark.parametrize("n,k", [(1, 1), (7, 3), (30, 4), (50, 8)])
def test_partitions_are_disjoint_complete_and_deterministic(strategy, n, k):
    examples = word_examples(n, categories=3)
    parts = divide(examples, strategy, num_subsets=k, seed=3)
    assert _flat(parts) == list(range(n))
    assert all(parts)
    assert divide(examples, strategy, num_subsets=k, seed=3) == parts


def test_random_partition_is_balanced_and_seeded():
    parts = divide(word_examples(30), "random", num_subsets=4, seed=0)
    assert sorted(len(p) for p in parts) == [7, 7, 8, 8]
    assert divide(word_examples(30), "random", num_subsets=4, seed=1) != parts


def test_field_partition_groups_by_value():
    examples = word_examples(12, categories=3)
    parts = divide(examples, "category", num_subsets=3)
    for part in parts:
        assert len({examples[i].category for i in part}) == 1
    assert len(parts) == 3


def test_field_partition_splits_large_groups_when_more_subsets_are_asked():
    parts = divide(word_examples(24, categories=2), "category", num_subsets=6)
    assert len(parts) == 6 and _flat(parts) == list(range(24))


def test_cluster_partition_separates_distinct_inputs():
    examples = [dspy.Example(q=f"apple banana cherry {i}").with_inputs("q") for i in range(6)]
    examples += [dspy.Example(q=f"xenon yttrium zirconium {i}").with_inputs("q") for i in range(6)]
    parts = divide(examples, "cluster", num_subsets=2)
    assert sorted(map(sorted, parts)) == [list(range(6)), list(range(6, 12))]


def test_callable_partition_takes_labels_or_subsets():
    examples = word_examples(6)
    assert divide(examples, lambda exs: [i % 2 for i in range(len(exs))], num_subsets=2) == [[0, 2, 4], [1, 3, 5]]
    assert divide(examples, lambda exs: [[0, 1, 2], [3, 4, 5]], num_subsets=2) == [[0, 1, 2], [3, 4, 5]]


def test_subset_size_sets_the_number_of_subsets():
    assert len(divide(word_examples(10), "random", subset_size=3)) == 4


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(examples=[], strategy="random"), "empty"),
        (dict(examples=word_examples(3), strategy="random", num_subsets=5), "more than the 3"),
        (dict(examples=word_examples(3), strategy="nofield", num_subsets=2), "no field 'nofield'"),
        (dict(examples=word_examples(3), strategy="random", num_subsets=2, subset_size=2), "not both"),
    ],
)
def test_bad_partition_requests_say_what_to_change(kwargs, message):
    with pytest.raises(ValueError, match=message):
        divide(**kwargs)


def test_check_partition_rejects_overlap_and_gaps():
    with pytest.raises(ValueError, match="overlap"):
        check_partition([[0, 1], [1, 2]], 3)
    with pytest.raises(ValueError, match="cover"):
        check_partition([[0], [2]], 3)
