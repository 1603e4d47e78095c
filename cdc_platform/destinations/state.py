"""Reconciliation state as destinations store it, and the apply algorithm they share.

Every destination keeps, next to the values users query, the state Cassandra's rules need
(:mod:`cdc_platform.changes.merge`): per cell its version (timestamp, rank, local deletion
time, value bytes), the row's liveness and deletion, collection elements and collection
deletions, and per partition its deletion and range deletions. Applying a batch is then a
join in that semilattice — ``stored ⊔ batch`` — computed here once for every destination:

1. fold the batch into per-partition deltas (:func:`fold`);
2. load the partition records of the batch's partitions and the stored state of the rows
   the batch touches — all rows of a partition whose partition deletion or range deletions
   grew (:class:`StateStore`);
3. merge, derive each row's shadow (partition and covering range deletions) and materialise
   the visible values (:func:`materialise`);
4. write rows and partition records back in one step.

Because the merge is a join (commutative, associative, idempotent), replays, reruns,
out-of-order batches and replica copies converge to the same stored state.

Byte layouts (all integers big-endian; signed values offset by 2**63 so that byte order is
numeric order, which lets SQL compare versions with ``>`` on ``bytea``/``String``):

- cell version: ``ts (8) | rank (1) | local deletion time (8) | value bytes``
- liveness: ``ts (8) | expiring (1) | expiry (8) | ttl (4)``
- deletion: ``ts (8) | local deletion time (8)``
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack

from cdc_platform.changes.merge import (
    NO_SHADOW,
    ClusteringKey,
    ClusteringOrder,
    CollectionState,
    Deletion,
    Key,
    Liveness,
    PartitionState,
    RangeDeletion,
    RowState,
    TableModel,
    Version,
    VisiblePartition,
    canonical,
    clustering_bytes,
    partition_bytes,
    row_state_of,
    visible_row,
)
from cdc_platform.changes.records import ChangeKind, RowChange
from cdc_platform.schema.model import Table

_OFFSET = 1 << 63
_VERSION_HEAD = struct.Struct(">QBQ")
_LIVENESS = struct.Struct(">QBQi")
_DELETION = struct.Struct(">QQ")
NEVER = 1 << 62  # "does not expire", as a comparable integer


def _u(v: int) -> int:
    return (v + _OFFSET) & 0xFFFFFFFFFFFFFFFF


def _s(v: int) -> int:
    return v - _OFFSET


def encode_version(v: Version) -> bytes:
    return _VERSION_HEAD.pack(_u(v.timestamp), v.rank, _u(v.local_deletion_time)) + v.value


def decode_version(raw: bytes) -> Version:
    ts, rank, ldt = _VERSION_HEAD.unpack_from(raw, 0)
    return Version(_s(ts), rank, _s(ldt), bytes(raw[_VERSION_HEAD.size :]))


def encode_liveness(lv: Liveness) -> bytes:
    return _LIVENESS.pack(_u(lv.timestamp), 1 if lv.ttl else 0, _u(lv.expires if lv.ttl else 0), lv.ttl)


def decode_liveness(raw: bytes) -> Liveness:
    ts, _, expires, ttl = _LIVENESS.unpack(raw)
    return Liveness(_s(ts), ttl, _s(expires) if ttl else 0)


def encode_deletion(d: Deletion) -> bytes:
    return _DELETION.pack(_u(d.timestamp), _u(d.local_deletion_time))


def decode_deletion(raw: bytes) -> Deletion:
    ts, ldt = _DELETION.unpack(raw)
    return Deletion(_s(ts), _s(ldt))


def encode_key(parts: Iterable[bytes | None]) -> bytes:
    """Length-prefixed components (``-1`` for null): injective, so equal bytes mean equal keys."""
    out = bytearray()
    for p in parts:
        out += struct.pack(">i", -1) if p is None else struct.pack(">i", len(p)) + p
    return bytes(out)


def decode_key(raw: bytes, count: int) -> tuple[bytes | None, ...]:
    parts: list[bytes | None] = []
    pos = 0
    for _ in range(count):
        (n,) = struct.unpack_from(">i", raw, pos)
        pos += 4
        if n < 0:
            parts.append(None)
        else:
            parts.append(bytes(raw[pos : pos + n]))
            pos += n
    return tuple(parts)


def decode_pk(raw: bytes, count: int) -> Key:
    """A partition key from :func:`encode_key` (its components are never null)."""
    return tuple(p if p is not None else b"" for p in decode_key(raw, count))


def row_key(pk: Key, ck: ClusteringKey) -> bytes:
    return encode_key(pk) + encode_key(ck)


# --------------------------------------------------------------------------------------------
# Whole-state blobs (collections, range deletions): msgpack with bytes.


def encode_collection(c: CollectionState) -> bytes:
    return msgpack.packb(
        [
            encode_deletion(c.deletion) if c.deletion else None,
            {p: encode_version(v) for p, v in c.elements.items()},
        ],
        use_bin_type=True,
    )


def decode_collection(raw: bytes) -> CollectionState:
    deletion, elements = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    return CollectionState(
        decode_deletion(deletion) if deletion is not None else None,
        {bytes(p): decode_version(v) for p, v in elements.items()},
    )


def encode_ranges(ranges: Iterable[RangeDeletion]) -> bytes:
    return msgpack.packb(
        sorted(
            [list(r.start), r.start_inclusive, list(r.end), r.end_inclusive, encode_deletion(r.deletion)]
            for r in ranges
        ),
        use_bin_type=True,
    )


def decode_ranges(raw: bytes | None) -> set[RangeDeletion]:
    if not raw:
        return set()
    return {
        RangeDeletion(tuple(s), bool(si), tuple(e), bool(ei), decode_deletion(d))
        for s, si, e, ei, d in msgpack.unpackb(raw, raw=False)
    }


# --------------------------------------------------------------------------------------------
# Folding a batch


@dataclass
class PartitionRecord:
    """Partition-level state: the partition deletion and the range deletions."""

    deletion: Deletion | None = None
    ranges: set[RangeDeletion] = field(default_factory=set)

    def merged(self, other: PartitionRecord) -> PartitionRecord:
        deletion = self.deletion
        if other.deletion is not None and (deletion is None or other.deletion > deletion):
            deletion = other.deletion
        return PartitionRecord(deletion, self.ranges | other.ranges)


@dataclass
class PartitionDelta:
    """What one batch changes in one partition."""

    record: PartitionRecord = field(default_factory=PartitionRecord)
    static: RowState | None = None
    rows: dict[ClusteringKey, RowState] = field(default_factory=dict)


def fold(table: Table, changes: Iterable[RowChange]) -> dict[Key, PartitionDelta]:
    """Merges a batch's changes per partition and row (the batch's own ``⊔``)."""
    out: dict[Key, PartitionDelta] = {}
    for ch in changes:
        pk = partition_bytes(table, ch.partition_key)
        delta = out.setdefault(pk, PartitionDelta())
        if ch.kind is ChangeKind.PARTITION_DELETE:
            assert ch.deletion_timestamp is not None
            delta.record = delta.record.merged(
                PartitionRecord(Deletion(ch.deletion_timestamp, ch.deletion_time or 0))
            )
        elif ch.kind is ChangeKind.RANGE_DELETE:
            from cdc_platform.changes.merge import range_of

            delta.record.ranges.add(range_of(table, ch))
        elif ch.kind is ChangeKind.STATIC_ROW:
            if delta.static is None:
                delta.static = RowState()
            row_state_of(table, ch, delta.static)
        else:
            ck = clustering_bytes(table, ch.clustering)
            st = delta.rows.get(ck)
            if st is None:
                st = delta.rows[ck] = RowState()
            row_state_of(table, ch, st)
    return out


# --------------------------------------------------------------------------------------------
# Materialising a row for storage


@dataclass
class Materialised:
    """What a destination stores for a row besides its state.

    ``values`` are the visible values ignoring TTL expiry (typed Python values); ``exists``
    whether the row has live data ignoring expiry; ``expires_at`` when it stops existing
    (``None``: never); ``refresh_at`` the earliest expiry of a visible value (``None``: none),
    after which ``values`` must be recomputed.
    """

    values: dict[str, Any]
    exists: bool
    expires_at: int | None
    refresh_at: int | None


def materialise(
    table: Table, state: RowState, shadow: int, *, static: bool = False, now: int | None = None
) -> Materialised:
    """Values to store for a row; with ``now``, values whose TTL passed by then are left out."""
    columns = table.static if static else table.regular
    at = -(1 << 62) if now is None else now  # "before every expiry" when no time is given
    values = visible_row(table, columns, state, at, shadow) or {}
    eff_shadow = max(shadow, state.deletion.timestamp if state.deletion else NO_SHADOW)
    horizons: list[int] = []
    refresh: list[int] = []

    def consider(ts: int, expiring: bool, expiry: int, floor: int) -> None:
        if ts <= floor or (expiring and expiry <= at):
            return
        horizons.append(expiry if expiring else NEVER)
        if expiring:
            refresh.append(expiry)

    lv = state.liveness
    if lv is not None:
        consider(lv.timestamp, bool(lv.ttl), lv.expires, eff_shadow)
    for c in columns:
        if c.type.is_multicell:
            coll = state.collections.get(c.name)
            if coll is not None:
                floor = max(eff_shadow, coll.deletion.timestamp if coll.deletion else NO_SHADOW)
                for e in coll.elements.values():
                    if e.rank <= 1:
                        consider(e.timestamp, e.rank == 1, e.local_deletion_time, floor)
        else:
            cell = state.cells.get(c.name)
            if cell is not None and cell.rank <= 1:
                consider(cell.timestamp, cell.rank == 1, cell.local_deletion_time, eff_shadow)
    expires = max(horizons) if horizons else None
    return Materialised(
        values,
        bool(horizons),
        None if expires is None or expires >= NEVER else expires,
        min(refresh) if refresh else None,
    )


def shadow_of(
    table: Table, order: ClusteringOrder, record: PartitionRecord | None, ck: ClusteringKey | None
) -> int:
    """The greatest partition or covering range deletion timestamp for a row (static: ``ck=None``)."""
    if record is None:
        return NO_SHADOW
    shadow = record.deletion.timestamp if record.deletion else NO_SHADOW
    if ck is not None:
        for r in record.ranges:
            if r.deletion.timestamp > shadow and order.covers(r, ck):
                shadow = r.deletion.timestamp
    return shadow


# --------------------------------------------------------------------------------------------
# The shared apply algorithm


RowId = tuple[Key, ClusteringKey | None]  # ck None = the static row


@dataclass
class RowWrite:
    pk: Key
    ck: ClusteringKey | None
    state: RowState
    shadow: int
    materialised: Materialised


@dataclass
class WritePlan:
    rows: list[RowWrite]
    partitions: list[tuple[Key, PartitionRecord]]


class StateStore(Protocol):
    """What a destination provides for :func:`plan_batch`: read stored state."""

    def load_partitions(self, table: Table, pks: Sequence[Key]) -> dict[Key, PartitionRecord]: ...

    def load_rows(self, table: Table, ids: Sequence[RowId]) -> dict[RowId, RowState]: ...

    def load_partition_rows(self, table: Table, pks: Sequence[Key]) -> dict[RowId, RowState]: ...


def plan_batch(table: Table, changes: Iterable[RowChange], store: StateStore) -> WritePlan:
    """Computes ``stored ⊔ batch`` for every row and partition the batch touches."""
    deltas = fold(table, changes)
    if not deltas:
        return WritePlan([], [])
    pks = list(deltas)
    stored_parts = store.load_partitions(table, pks)
    merged_parts: dict[Key, PartitionRecord] = {}
    grown: list[Key] = []
    for pk, delta in deltas.items():
        old = stored_parts.get(pk, PartitionRecord())
        new = old.merged(delta.record)
        merged_parts[pk] = new
        if new != old:
            grown.append(pk)
    ids: list[RowId] = []
    for pk, delta in deltas.items():
        if pk in grown:
            continue
        ids.extend((pk, ck) for ck in delta.rows)
        if delta.static is not None:
            ids.append((pk, None))
    stored = store.load_rows(table, ids) if ids else {}
    if grown:
        stored.update(store.load_partition_rows(table, grown))
    order = ClusteringOrder(table)
    touched: dict[RowId, RowState] = {}
    for rid, st in stored.items():
        touched[rid] = _copy(st)
    for pk, delta in deltas.items():
        for row_ck, row_st in delta.rows.items():
            mine = touched.get((pk, row_ck))
            if mine is None:
                touched[(pk, row_ck)] = row_st  # nothing stored: the batch's state is the state
            else:
                mine.merge(row_st)
        if delta.static is not None:
            mine = touched.get((pk, None))
            if mine is None:
                touched[(pk, None)] = delta.static
            else:
                mine.merge(delta.static)
    rows: list[RowWrite] = []
    for (pk, ck), st in touched.items():
        before = stored.get((pk, ck))
        if pk not in grown and before is not None and before.signature() == st.signature():
            continue  # a replay: nothing changes, nothing is written
        shadow = shadow_of(table, order, merged_parts.get(pk) or stored_parts.get(pk), ck)
        rows.append(RowWrite(pk, ck, st, shadow, materialise(table, st, shadow, static=ck is None)))
    partitions = [(pk, merged_parts[pk]) for pk in grown]
    return WritePlan(rows, partitions)


def _copy(st: RowState) -> RowState:
    out = RowState()
    out.merge(st)
    return out


def visible_state(
    table: Table,
    partitions: dict[Key, PartitionRecord],
    rows: dict[RowId, RowState],
    now: int,
) -> dict[Key, VisiblePartition]:
    """What Cassandra returns at ``now`` from stored state (for dumps and reconciliation)."""
    model = TableModel(table)
    for pk, rec in partitions.items():
        model.partitions.setdefault(pk, PartitionState()).deletion = rec.deletion
        model.partitions[pk].ranges = set(rec.ranges)
    for (pk, ck), st in rows.items():
        part = model.partitions.setdefault(pk, PartitionState())
        if ck is None:
            part.static = st
        else:
            part.rows[ck] = st
    return model.visible(now)


def fingerprint(table: Table, state: dict[Key, VisiblePartition]) -> tuple[int, int]:
    """Row count and an order-independent 64-bit content fingerprint of a visible state."""
    import hashlib

    total = 0
    rows = canonical(table, state)
    for (pk, ck), values in rows.items():
        h = hashlib.blake2b(digest_size=8)
        h.update(encode_key(pk))
        h.update(b"\x00" if ck is None else b"\x01" + encode_key(ck))
        for name in sorted(values):
            h.update(name.encode())
            h.update(encode_key([values[name]]))
        total = (total + int.from_bytes(h.digest(), "big")) & 0xFFFFFFFFFFFFFFFF
    return len(rows), total
