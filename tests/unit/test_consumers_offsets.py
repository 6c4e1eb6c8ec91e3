"""The commit point of a partition: the lowest unfinished offset, or one past the last seen."""

from __future__ import annotations

import random

from consumers import OffsetTracker


def test_nothing_seen_nothing_to_commit() -> None:
    assert OffsetTracker().committable() is None


def test_commit_stops_at_the_lowest_unfinished() -> None:
    tracker = OffsetTracker()
    for offset in range(10, 15):
        tracker.add(offset)
    assert tracker.committable() == 10
    tracker.done(11)
    tracker.done(12)
    assert tracker.committable() == 10  # 10 is still in flight: 11 and 12 must wait
    tracker.done(10)
    assert tracker.committable() == 13
    tracker.done(14)
    assert tracker.committable() == 13
    tracker.done(13)
    assert tracker.committable() == 15
    assert tracker.pending == 0


def test_gaps_in_offsets_are_fine() -> None:
    # Transaction markers and compaction leave holes in the offsets of a partition.
    tracker = OffsetTracker()
    tracker.add(3)
    tracker.add(7)
    tracker.done(3)
    assert tracker.committable() == 7
    tracker.done(7)
    assert tracker.committable() == 8


def test_done_twice_or_unknown_is_harmless() -> None:
    tracker = OffsetTracker()
    tracker.add(0)
    tracker.done(0)
    tracker.done(0)
    tracker.done(99)
    assert tracker.committable() == 1


def test_never_past_an_unfinished_offset_in_any_order() -> None:
    rng = random.Random(7)
    for _ in range(50):
        tracker = OffsetTracker()
        offsets = list(range(100))
        for offset in offsets:
            tracker.add(offset)
        finished: set[int] = set()
        rng.shuffle(offsets)
        for offset in offsets:
            tracker.done(offset)
            finished.add(offset)
            point = tracker.committable()
            assert point is not None
            # Everything below the commit point is finished; the point itself is not (or is the end).
            assert all(o in finished for o in range(point))
            assert point == 100 or point not in finished
