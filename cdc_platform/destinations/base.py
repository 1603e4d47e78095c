"""The interface every destination implements, and what they share."""

from __future__ import annotations

import abc
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self, TypeVar

from cdc_platform.changes.merge import Key, VisiblePartition
from cdc_platform.changes.records import RowChange
from cdc_platform.schema.model import Table

if TYPE_CHECKING:
    from cdc_platform.changes.arrow import ChangeBatch
    from cdc_platform.destinations.state import WritePlan

log = logging.getLogger(__name__)

T = TypeVar("T")


class DestinationError(Exception):
    """A load failed; names the destination, the table and the batch."""

    def __init__(
        self, message: str, *, destination: str, table: str | None = None, batch: str | None = None
    ) -> None:
        self.destination = destination
        self.table = table
        self.batch = batch
        where = [f"destination {destination}"]
        if table:
            where.append(f"table {table}")
        if batch:
            where.append(f"batch {batch}")
        super().__init__(f"{message} ({', '.join(where)})")


class UnsupportedTableError(DestinationError):
    """The table cannot be loaded into this destination (e.g. counter tables)."""


@dataclass
class ApplyResult:
    """What one batch did to one table of a destination."""

    destination: str
    table: str
    changes: int
    rows_written: int
    partitions_written: int
    seconds: float
    retries: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Fingerprint:
    """Row count and order-independent content hash of a table's current state (or of some keys)."""

    rows: int
    digest: int


@dataclass
class RetryPolicy:
    """Retries with exponential backoff and jitter for transient connection failures."""

    attempts: int = 5
    initial_delay: float = 0.2
    max_delay: float = 10.0

    def run(
        self, fn: Callable[[], T], *, transient: Callable[[BaseException], bool], what: str
    ) -> tuple[T, int]:
        delay = self.initial_delay
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(), attempt - 1
            except Exception as exc:
                if attempt == self.attempts or not transient(exc):
                    raise
                log.warning(
                    "%s failed (%s); retry %d/%d in %.1fs", what, exc, attempt, self.attempts - 1, delay
                )
                time.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self.max_delay)
        raise AssertionError("unreachable")


class Destination(abc.ABC):
    """A destination holding Cassandra's current state (and possibly history) per table."""

    name: str

    @abc.abstractmethod
    def ensure_table(self, table: Table) -> list[str]:
        """Creates or evolves the destination tables for ``table``; returns the changes made."""

    @abc.abstractmethod
    def apply(self, table: Table, changes: Sequence[RowChange], *, batch: str = "") -> ApplyResult:
        """Applies a batch of changes idempotently (atomically where the engine allows)."""

    def apply_batch(self, table: Table, changes: ChangeBatch, *, batch: str = "") -> ApplyResult:
        """:meth:`apply` for a staged change batch; destinations that can read its columns
        directly (rows it creates, without a Python object per change) override this."""
        return self.apply(table, changes.to_changes(), batch=batch)

    @abc.abstractmethod
    def read_state(
        self, table: Table, now: int, keys: Sequence[Key] | None = None
    ) -> dict[Key, VisiblePartition]:
        """What Cassandra would return at ``now`` (seconds), for all partitions or some."""

    def pending(self, table: Table, changes: Sequence[RowChange]) -> int:
        """How many writes applying ``changes`` would still make (0: the destination contains them).

        Reads only. Because applying is a join, a destination that loaded a batch contains it
        from then on, whatever else it loaded since (replica copies, later writes).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot check containment")

    def pending_batch(self, table: Table, changes: ChangeBatch) -> int:
        """:meth:`pending` for a staged change batch; destinations that plan change batches
        column-wise override this (rows stored exactly as the batch would write them are
        found contained without a merge)."""
        return self.pending(table, changes.to_changes())

    def fingerprint(self, table: Table, now: int, keys: Sequence[Key] | None = None) -> Fingerprint:
        from cdc_platform.destinations.state import fingerprint

        rows, digest = fingerprint(table, self.read_state(table, now, keys))
        return Fingerprint(rows, digest)

    def close(self) -> None:  # noqa: B027 - optional hook: destinations without connections keep it
        """Releases connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class MergingDestination(Destination):
    """A current-state destination that applies the shared merge (:mod:`.state`): change lists
    are planned with ``plan_batch``, staged batches with ``plan_change_batch`` (fresh rows
    column-wise); the destination writes plans (:meth:`_apply`) and counts what a plan would
    still write (:meth:`_pending`)."""

    def apply(self, table: Table, changes: Sequence[RowChange], *, batch: str = "") -> ApplyResult:
        from cdc_platform.destinations.state import plan_batch

        return self._apply(table, len(changes), batch, lambda store: plan_batch(table, changes, store))

    def apply_batch(self, table: Table, changes: ChangeBatch, *, batch: str = "") -> ApplyResult:
        from cdc_platform.destinations.columnar import plan_change_batch

        return self._apply(table, len(changes), batch, lambda store: plan_change_batch(table, changes, store))

    def pending(self, table: Table, changes: Sequence[RowChange]) -> int:
        from cdc_platform.destinations.state import plan_batch

        return self._pending(table, lambda store: plan_batch(table, changes, store))

    def pending_batch(self, table: Table, changes: ChangeBatch) -> int:
        from cdc_platform.destinations.columnar import plan_change_batch

        return self._pending(table, lambda store: plan_change_batch(table, changes, store))

    @abc.abstractmethod
    def _apply(
        self, table: Table, count: int, batch: str, plan_of: Callable[[Any], WritePlan]
    ) -> ApplyResult:
        """Plans a batch of ``count`` changes against the stored state (``plan_of(store)``) and
        writes the plan."""

    @abc.abstractmethod
    def _pending(self, table: Table, plan_of: Callable[[Any], WritePlan]) -> int:
        """Rows and partition records the plan would still write (reads only)."""


def check_supported(destination: str, table: Table) -> None:
    if any(c.is_counter for c in table.columns):
        raise UnsupportedTableError(
            "counter tables are not loaded: counters merge by CounterContext, not by last-write-wins; "
            "exclude the table from capture",
            destination=destination,
            table=table.qualified_name,
        )
