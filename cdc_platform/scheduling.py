"""What to load next and what to retire, from ``cdc_raw`` and the ledger (no Dagster here).

The ledger is what Dagster recorded: per segment, the latest materialization of the
``cdc/loaded`` asset, whose metadata says up to which offset every destination holds the
segment (:class:`LedgerEntry`). The sensor reads it from the instance and calls
:func:`plan_node`; this module decides.

Rules:

- a segment with durable data beyond what the ledger covers gets one run for
  ``[covered, durable]`` (version 6 segments: the whole file once), unless a run of it is
  already queued or in progress, or it failed recently (exponential backoff);
- a segment is retired when Cassandra finished it (``COMPLETED``), the ledger covers its
  durable offset, and the destinations agreed on its last batch;
- a segment that never gets ``COMPLETED`` (the node restarted) is retired once a newer
  segment of the same node has been consumed, the ledger covers its durable offset, and its
  index has not changed for ``stale_after`` seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cdc_platform.cdc_raw import SegmentState


@dataclass(frozen=True)
class LedgerEntry:
    """The latest ``cdc/loaded`` materialization of a segment.

    Attributes:
        covered_to: every destination holds the segment's entries up to this offset.
        completed: the run loaded a ``COMPLETED`` (or version 6) segment to its end.
        agreed: the destinations agreed with each other on that run's batch.
        timestamp: when it was recorded (seconds since the epoch).
    """

    covered_to: int
    completed: bool
    agreed: bool
    timestamp: float


@dataclass(frozen=True)
class Failures:
    """Failed or canceled runs of a segment since its latest ledger entry."""

    count: int
    last_at: float


@dataclass(frozen=True)
class LoadRequest:
    """A range to load: entries with resume positions in ``(start, end]`` (``end`` -1: to the end)."""

    state: SegmentState
    start: int
    end: int
    attempt: int

    @property
    def run_key(self) -> str:
        # Dagster keeps run keys forever: the attempt number lets a failed range run again.
        return f"{self.state.key}@{self.start}-{self.end}#{self.attempt}"


@dataclass
class NodePlan:
    """What one tick decided for one node."""

    requests: list[LoadRequest] = field(default_factory=list)
    retire: list[SegmentState] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    backing_off: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # over max_runs_per_tick
    index_errors: list[str] = field(default_factory=list)
    unloaded: list[SegmentState] = field(default_factory=list)


def backoff_seconds(failures: int, base: float, maximum: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures."""
    if failures <= 0:
        return 0.0
    return float(min(base * (2 ** (failures - 1)), maximum))


def is_loaded(state: SegmentState, entry: LedgerEntry | None) -> bool:
    """Whether the ledger covers everything durable in the segment now."""
    if entry is None:
        return not state.has_durable_data
    if state.durable is None:
        return entry.completed
    return entry.covered_to >= state.durable


def plan_node(
    states: list[SegmentState],
    ledger: Mapping[str, LedgerEntry],
    *,
    running: set[str],
    failures: Mapping[str, Failures],
    now: float,
    max_runs: int,
    backoff_base: float,
    backoff_max: float,
    stale_after: float,
) -> NodePlan:
    """Decides the runs to request and the segments to retire for one node's ``cdc_raw``.

    Args:
        states: the node's segments (from :func:`cdc_platform.cdc_raw.scan`).
        ledger: latest ledger entry per partition key.
        running: partition keys with a queued or in-progress run.
        failures: recent failures per partition key.
        now: the current time (seconds since the epoch).
        max_runs: at most this many requests (oldest segments first).
        backoff_base: seconds to wait after a first failure (doubling per failure).
        backoff_max: the longest wait.
        stale_after: a segment without ``COMPLETED`` whose index has not changed for this
            long, with a newer segment consumed, is abandoned by Cassandra.
    """
    plan = NodePlan()
    ordered = sorted(states, key=lambda s: s.segment_id)
    consumed_ids = [
        s.segment_id for s in ordered if (e := ledger.get(s.key)) is not None and e.covered_to > 0
    ]
    newest_consumed = max(consumed_ids, default=-1)
    for s in ordered:
        key = s.key
        if s.index_error:
            plan.index_errors.append(f"{key}: {s.index_error}")
            continue
        entry = ledger.get(key)
        if key in running:
            plan.running.append(key)
            if not is_loaded(s, entry):
                plan.unloaded.append(s)
            continue
        if is_loaded(s, entry):
            # Nothing was ever durable (entry None): there is nothing to agree on.
            agreed = entry.agreed if entry is not None else True
            if agreed and _finished(s, newest_consumed, now, stale_after):
                plan.retire.append(s)
            continue
        plan.unloaded.append(s)
        fail = failures.get(key)
        if fail is not None and now - fail.last_at < backoff_seconds(fail.count, backoff_base, backoff_max):
            plan.backing_off.append(key)
            continue
        if len(plan.requests) >= max_runs:
            plan.deferred.append(key)
            continue
        start = entry.covered_to if entry is not None else 0
        end = -1 if s.durable is None else s.durable
        plan.requests.append(LoadRequest(s, start, end, fail.count if fail else 0))
    return plan


def _finished(s: SegmentState, newest_consumed: int, now: float, stale_after: float) -> bool:
    if s.completed:
        return True
    # Never COMPLETED: Cassandra abandoned it at a restart if a newer segment of the node has
    # data loaded and this one has been quiet for a while.
    return newest_consumed > s.segment_id and now - s.updated_at >= stale_after


def advance(prev: LedgerEntry | None, start: int, covered_to: int, completed: bool) -> tuple[int, bool, bool]:
    """The ledger position after loading ``(start, covered_to]``.

    Returns:
        ``(covered_to, completed, contiguous)``. A range starting beyond the recorded position
        (a hand-made run config) leaves a gap: the position does not move past the gap. A range
        behind the recorded position (a rerun of an older run) never moves it back.
    """
    before = prev.covered_to if prev is not None else 0
    was_completed = prev.completed if prev is not None else False
    if start > before:
        return before, was_completed, False
    return max(before, covered_to), was_completed or (completed and covered_to >= before), True
