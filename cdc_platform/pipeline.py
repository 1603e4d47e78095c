"""The pipeline steps as plain functions: decode a segment range, load it, dump destinations.

The command line (``cdc-platform load``/``dump``) and the Dagster assets both call these, so
what an operator runs by hand is exactly what the platform runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cdc_platform.changes.merge import ClusteringOrder, Key, VisiblePartition, decode_value
from cdc_platform.changes.records import RowChange, changes_of_update
from cdc_platform.commitlog.encryption import KeyProvider
from cdc_platform.commitlog.segment import DecodedEntry, ReadReport, SegmentDecoder, SkippedEntry
from cdc_platform.destinations.base import ApplyResult, Destination
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


def load_changes(
    destinations: Sequence[Destination],
    schema: Schema,
    changes: dict[str, list[RowChange]],
    *,
    batch: str,
) -> list[ApplyResult]:
    """Applies each table's changes to every destination (idempotent: reruns change nothing)."""
    results = []
    for name in sorted(changes):
        table = schema.table(name)
        for dest in destinations:
            results.append(dest.apply(table, changes[name], batch=batch))
    return results


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
