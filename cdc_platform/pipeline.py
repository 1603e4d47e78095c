"""The pipeline steps as plain functions: decode a segment range, load it, dump destinations.

The command line (``cdc-platform load``/``dump``) and the Dagster assets both call these, so
what an operator runs by hand is exactly what the platform runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdc_platform.changes.merge import ClusteringOrder, Key, VisiblePartition, decode_value
from cdc_platform.changes.records import RowChange, changes_of_update
from cdc_platform.commitlog.encryption import KeyProvider
from cdc_platform.commitlog.segment import DecodedEntry, ReadReport, SegmentDecoder, SkippedEntry
from cdc_platform.destinations.base import ApplyResult, Destination
from cdc_platform.gc_pause import paused_gc
from cdc_platform.masking import MaskAudit, MaskingPolicy
from cdc_platform.quality import ValidationSummary, Validator
from cdc_platform.quality.quarantine import Quarantined
from cdc_platform.schema.model import Schema, Table
from cdc_platform.schema.render import json_name, quote_json_string, to_json

log = logging.getLogger(__name__)


@dataclass
class DecodedRange:
    """The row changes of one segment range, per table, with what reading found."""

    path: str
    node: str | None
    segment_id: int
    start: int
    end: int | None
    report: ReadReport
    changes: dict[str, list[RowChange]] = field(default_factory=dict)
    skipped: list[SkippedEntry] = field(default_factory=list)

    @property
    def resume_position(self) -> int:
        """Where the next read of this segment starts (the last entry consumed)."""
        return self.report.last_entry_location


@paused_gc()
def decode_range(
    path: str | Path,
    schema: Schema,
    *,
    node: str | None = None,
    capture: set[str] | None = None,
    start: int = 0,
    end: int | None = None,
    key_provider: KeyProvider | None = None,
) -> DecodedRange:
    """Decodes the entries of ``path`` with resume positions in ``(start, end]`` into row changes."""
    decoder = SegmentDecoder(path, schema, capture=capture, start=start, end=end, key_provider=key_provider)
    out = DecodedRange(str(path), node, decoder.report.segment_id, start, end, decoder.report)
    for item in decoder:
        if isinstance(item, SkippedEntry):
            out.skipped.append(item)
            continue
        assert isinstance(item, DecodedEntry)
        for update in item.mutation.updates:
            name = update.table.qualified_name
            out.changes.setdefault(name, []).extend(
                changes_of_update(
                    update,
                    segment_id=decoder.report.segment_id,
                    position=item.entry_location,
                    entry_start=item.position,
                    node=node,
                )
            )
    return out


@paused_gc()
def load_changes(
    destinations: Sequence[Destination],
    schema: Schema,
    changes: dict[str, list[RowChange]],
    *,
    batch: str,
) -> list[ApplyResult]:
    """Applies each table's changes to every destination (idempotent: reruns change nothing).

    The changes go as a change batch (:meth:`Destination.apply_batch`), as the Dagster load
    stage reads them from the staging area: the same column-wise paths.
    """
    from cdc_platform.changes.arrow import ChangeBatch

    results = []
    for name in sorted(changes):
        table = schema.table(name)
        staged = ChangeBatch.from_changes(table, changes[name])
        for dest in destinations:
            results.append(dest.apply_batch(table, staged, batch=batch))
    return results


# --------------------------------------------------------------------------------------------
# Validate and mask


@dataclass
class ProcessedTable:
    """One table's changes after validation and masking: what to load, what to quarantine."""

    table: str
    accepted: list[RowChange]  # masked
    quarantined: list[Quarantined]  # masked, with reasons
    validation: ValidationSummary | None = None
    audit: MaskAudit | None = None

    def metadata(self) -> dict[str, Any]:
        """A JSON-safe summary without values (Dagster metadata, logs)."""
        ops: dict[str, int] = {}
        for c in self.accepted:
            ops[c.operation] = ops.get(c.operation, 0) + 1
        return {
            "table": self.table,
            "changes_by_operation": ops,
            "quarantined": len(self.quarantined),
            "validation": self.validation.as_metadata() if self.validation else None,
            "masking": self.audit.as_metadata() if self.audit else None,
        }


@paused_gc()
def process_changes(
    schema: Schema,
    changes: dict[str, list[RowChange]],
    *,
    validator: Validator | None = None,
    masking: MaskingPolicy | None = None,
) -> dict[str, ProcessedTable]:
    """Validates (on clear values), then masks what is loaded and what is quarantined.

    Raises:
        BatchRejectedError: a table whose policy is ``fail`` had an error-severity failure.
    """
    out: dict[str, ProcessedTable] = {}
    for name in sorted(changes):
        table = schema.table(name)
        batch = changes[name]
        summary = None
        if validator is not None:
            outcome = validator.validate(table, batch)
            accepted, rejected, summary = outcome.accepted, outcome.rejected, outcome.summary
        else:
            accepted, rejected = list(batch), []
        audit = None
        rejected_changes = [r.change for r in rejected]
        if masking is not None:
            # One call, so the audit counts what is loaded and what is quarantined.
            masked = masking.mask(table, accepted + rejected_changes)
            audit = masked.audit
            accepted, masked_rejected = masked.changes[: len(accepted)], masked.changes[len(accepted) :]
        else:
            masked_rejected = rejected_changes
        quarantined = [
            Quarantined(change, [f.as_metadata() for f in r.failures])
            for change, r in zip(masked_rejected, rejected, strict=True)
        ]
        out[name] = ProcessedTable(name, accepted, quarantined, summary, audit)
    return out


def revalidator(
    validator: Validator | None, masking: MaskingPolicy | None
) -> Callable[[Table, list[RowChange]], tuple[list[RowChange], list[RowChange]]]:
    """Re-validation for quarantine replay of *masked* changes.

    Failures on masked columns are not held against the masked copy: a rule on a masked
    column can only be checked on the clear value, which the quarantine does not keep.
    """

    def revalidate(table: Table, changes: list[RowChange]) -> tuple[list[RowChange], list[RowChange]]:
        if validator is None:
            return list(changes), []
        outcome = validator.validate(table, changes)
        masked = {_base_column(p) for p in (masking.masked_columns(table) if masking else {})}
        passing = list(outcome.accepted)
        failing = []
        for r in outcome.rejected:
            columns = {
                _base_column(c)
                for f in r.failures
                if f.severity == "error"
                for c in (f.column or "").split(",")
            }
            if columns and columns <= masked:
                passing.append(r.change)
            else:
                failing.append(r.change)
        return passing, failing

    return revalidate


def _base_column(path: str) -> str:
    for sep in (".", "[", "{"):
        path = path.split(sep, 1)[0]
    return path.strip()


# --------------------------------------------------------------------------------------------
# Dumps


def visible_rows(table: Table, state: dict[Key, VisiblePartition]) -> list[dict[str, str]]:
    """``SELECT *`` rows of a visible state as JSON fragments per column, in a stable order.

    Partitions are ordered by their serialized key, rows by Cassandra's clustering order;
    a partition with live static columns but no live rows gives one row with null clustering
    columns, as Cassandra returns it.
    """
    order = ClusteringOrder(table)
    columns = table.partition_key + table.clustering + table.static + table.regular
    out: list[dict[str, str]] = []
    for pk in sorted(state):
        part: VisiblePartition = state[pk]
        keys = {c.name: decode_value(c.type, raw) for c, raw in zip(table.partition_key, pk, strict=True)}
        static = part.static or {}
        rows = sorted(part.rows.items(), key=lambda kv: order.sort_key(kv[0]))
        if not rows:
            rows = [((None,) * len(table.clustering), {})]
        for ck, values in rows:
            row = dict(keys)
            for c, raw in zip(table.clustering, ck, strict=True):
                row[c.name] = None if raw is None else decode_value(c.type, raw)
            row.update(static)
            row.update(values)
            out.append({c.name: to_json(c.type, row.get(c.name)) for c in columns})
    return out


def render_state(table: Table, state: dict[Key, VisiblePartition]) -> str:
    """One JSON object for a table's visible state, values as ``toJson()`` (the ``dump`` format)."""
    rows = visible_rows(table, state)
    columns = table.partition_key + table.clustering + table.static + table.regular
    rendered = ["{" + ", ".join(f"{json_name(c.name)}: {row[c.name]}" for c in columns) + "}" for row in rows]
    return (
        "{"
        + f'"keyspace": {quote_json_string(table.keyspace)}, "table": {quote_json_string(table.name)}, '
        + f'"rows": [{", ".join(rendered)}]'
        + "}"
    )


def dump_table(destination: Destination, table: Table, now: int) -> str:
    """The table's current state in ``destination`` (see :func:`render_state`)."""
    return render_state(table, destination.read_state(table, now))


def captured_tables(schema: Schema, names: Iterable[str] | None = None) -> list[Table]:
    if names:
        return [schema.table(n) for n in names]
    return sorted(schema.tables, key=lambda t: t.qualified_name)
