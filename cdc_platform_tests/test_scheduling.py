"""What the sensor asks for and retires, decided from cdc_raw and the ledger (no Dagster)."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_platform.cdc_raw import SegmentState
from cdc_platform.scheduling import Failures, LedgerEntry, advance, backoff_seconds, plan_node

NOW = 1_800_000_000.0


def seg(
    segment_id: int, durable: int | None, completed: bool = False, *, version: int = 7, age: float = 0
) -> SegmentState:
    path = Path(f"/cdc_raw/CommitLog-{version}-{segment_id}.log")
    return SegmentState("node1", segment_id, version, path, None, 1 << 20, durable, completed, NOW - age)


def entry(covered: int, completed: bool = False, agreed: bool = True) -> LedgerEntry:
    return LedgerEntry(covered, completed, agreed, NOW - 100)


def plan(states, ledger=None, running=(), failures=None, max_runs=20, stale_after=600.0):  # type: ignore[no-untyped-def]
    return plan_node(
        states,
        ledger or {},
        running=set(running),
        failures=failures or {},
        now=NOW,
        max_runs=max_runs,
        backoff_base=30,
        backoff_max=900,
        stale_after=stale_after,
    )


def test_durable_ranges_not_in_the_ledger_are_requested_from_where_it_stopped() -> None:
    p = plan([seg(1, 4096), seg(2, 9000), seg(3, 0)], {"node1:2": entry(5000)})
    assert [(r.state.key, r.start, r.end, r.attempt) for r in p.requests] == [
        ("node1:1", 0, 4096, 0),
        ("node1:2", 5000, 9000, 0),
    ]
    assert p.requests[1].run_key == "node1:2@5000-9000#0"


def test_version_6_segments_are_read_whole_once() -> None:
    s = seg(1, None, True, version=6)
    assert [(r.start, r.end) for r in plan([s]).requests] == [(0, -1)]
    assert plan([s], {"node1:1": entry(700, completed=True)}).requests == []


def test_one_run_per_segment_at_a_time() -> None:
    p = plan([seg(1, 4096)], running={"node1:1"})
    assert p.requests == [] and p.running == ["node1:1"] and [s.key for s in p.unloaded] == ["node1:1"]


def test_failed_segments_back_off_then_retry_with_a_new_run_key() -> None:
    s = seg(1, 4096)
    waiting = plan([s], failures={"node1:1": Failures(2, NOW - 59)})  # 2 failures: 60 s
    assert waiting.requests == [] and waiting.backing_off == ["node1:1"]
    again = plan([s], failures={"node1:1": Failures(2, NOW - 61)})
    assert [r.run_key for r in again.requests] == ["node1:1@0-4096#2"]
    assert backoff_seconds(0, 30, 900) == 0 and backoff_seconds(10, 30, 900) == 900


def test_requests_are_capped_per_tick_oldest_first() -> None:
    p = plan([seg(i, 100) for i in (5, 3, 4)], max_runs=2)
    assert [r.state.segment_id for r in p.requests] == [3, 4] and p.deferred == ["node1:5"]


def test_completed_loaded_agreed_segments_are_retired() -> None:
    done, disagreed, partial = seg(1, 800, True), seg(2, 800, True), seg(3, 800, True)
    p = plan(
        [done, disagreed, partial],
        {"node1:1": entry(800), "node1:2": entry(800, agreed=False), "node1:3": entry(400)},
    )
    assert [s.key for s in p.retire] == ["node1:1"]
    assert [r.state.key for r in p.requests] == ["node1:3"]


def test_abandoned_segments_are_retired_after_a_newer_one_is_consumed_and_a_quiet_period() -> None:
    old_quiet, old_recent = seg(1, 500, age=601), seg(2, 500, age=10)
    newer = seg(3, 200)
    ledger = {"node1:1": entry(500), "node1:2": entry(500), "node1:3": entry(100)}
    assert [s.key for s in plan([old_quiet, old_recent, newer], ledger).retire] == ["node1:1"]
    # Without a consumed newer segment, nothing says Cassandra is done with it.
    assert plan([old_quiet, newer], {"node1:1": entry(500)}).retire == []


def test_a_completed_segment_with_nothing_durable_is_retired_without_a_run() -> None:
    p = plan([seg(1, 0, True)])
    assert p.requests == [] and [s.key for s in p.retire] == ["node1:1"]


def test_the_ledger_position_never_moves_back_or_past_a_gap() -> None:
    assert advance(None, 0, 4096, False) == (4096, False, True)
    assert advance(entry(4096), 4096, 9000, True) == (9000, True, True)
    assert advance(entry(9000), 0, 4096, False) == (9000, False, True)  # an older run re-executed
    assert advance(entry(4096), 5000, 9000, True) == (4096, False, False)  # a gap


@settings(max_examples=200, deadline=None)
@given(
    growth=st.lists(st.integers(0, 5000), min_size=1, max_size=12),
    fails=st.lists(st.booleans(), min_size=13, max_size=13),
)
def test_ranges_requested_over_time_tile_the_segment_exactly(growth: list[int], fails: list[bool]) -> None:
    """As the index grows and runs fail or succeed, every byte is requested and covered once."""
    durable = 0
    ledger: dict[str, LedgerEntry] = {}
    loaded: list[tuple[int, int]] = []
    steps = [*growth, 0, 0, 0]  # then no more growth: the segment completes; later runs succeed
    for i, g in enumerate(steps):
        durable += g
        completed = i >= len(growth)
        p = plan_node(
            [seg(1, durable, completed)],
            ledger,
            running=set(),
            failures={},
            now=NOW,
            max_runs=5,
            backoff_base=0,
            backoff_max=0,
            stale_after=600,
        )
        for r in p.requests:
            if i <= len(growth) and i < len(fails) and fails[i]:
                continue  # the run failed: the ledger did not move
            prev = ledger.get("node1:1")
            covered, done, contiguous = advance(prev, r.start, r.end, completed)
            assert contiguous
            loaded.append((r.start, r.end))
            ledger["node1:1"] = LedgerEntry(covered, done, True, NOW)
    final = plan([seg(1, durable, True)], ledger)
    if durable:
        assert final.requests == [] and [s.key for s in final.retire] == ["node1:1"]
        assert loaded[0][0] == 0 and loaded[-1][1] == durable
        assert all(a[1] == b[0] for a, b in itertools.pairwise(loaded))
