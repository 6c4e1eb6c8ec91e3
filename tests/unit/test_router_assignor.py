"""Partition numbers to router instances: the pure rule behind fencing by transactional id."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.assignor import assign_partition_numbers, transactional_id


def test_every_partition_numbered_p_goes_to_one_member_whatever_the_topic_sizes() -> None:
    subscriptions = {"b": ["t.a", "t.b"], "a": ["t.a", "t.b"], "c": ["t.a", "t.b"]}
    assignment = assign_partition_numbers(subscriptions, {"t.a": range(6), "t.b": range(3)})
    assert assignment == {
        "a": {"t.a": [0, 3], "t.b": [0]},
        "b": {"t.a": [1, 4], "t.b": [1]},
        "c": {"t.a": [2, 5], "t.b": [2]},
    }


def test_a_member_not_yet_subscribed_to_a_topic_gets_none_of_it_rather_than_break_ownership() -> None:
    subscriptions = {"a": ["t.a"], "b": ["t.a", "t.new"]}
    assignment = assign_partition_numbers(subscriptions, {"t.a": range(2), "t.new": range(2)})
    assert assignment == {"a": {"t.a": [0]}, "b": {"t.a": [1], "t.new": [1]}}


def test_no_members_no_assignment_and_the_transactional_id_names_the_number() -> None:
    assert assign_partition_numbers({}, {"t": range(3)}) == {}
    assert transactional_id("prik", 7) == "prik-router-p7"


@given(
    members=st.sets(st.text("abcdef", min_size=1, max_size=4), min_size=1, max_size=6),
    sizes=st.dictionaries(st.sampled_from(["t.a", "t.b", "t.c", "t.d"]), st.integers(1, 24), min_size=1),
)
def test_each_partition_once_and_each_number_with_one_owner(members: set[str], sizes: dict[str, int]) -> None:
    topics = sorted(sizes)
    assignment = assign_partition_numbers(
        dict.fromkeys(members, topics), {t: range(n) for t, n in sizes.items()}
    )
    given_out = [(t, p) for per_topic in assignment.values() for t, ps in per_topic.items() for p in ps]
    assert sorted(given_out) == sorted((t, p) for t, n in sizes.items() for p in range(n))
    owners: dict[int, set[str]] = {}
    for member, per_topic in assignment.items():
        for ps in per_topic.values():
            for p in ps:
                owners.setdefault(p, set()).add(member)
    assert all(len(o) == 1 for o in owners.values())
    # Spread: no member owns two numbers more than another.
    counts = [len({p for ps in assignment[m].values() for p in ps}) for m in members]
    assert max(counts) - min(counts) <= 1
