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

**Fresh rows.** Most changes of a steady load create rows: an ``INSERT`` or ``UPDATE`` of live,
non-expiring simple cells of a key nothing is stored for. For such a row ``stored ⊔ batch``
is the change's own state and its visible values are the change's values, so steps 1–3
reduce to encoding (:func:`split_fresh`): the rows are collected column by column
(:class:`FreshRows`), the destination is asked once which of their keys are stored or lie in a
partition with a stored partition record (:meth:`StateStore.stored_keys`), and those, with
every row a deletion, TTL, collection cell or a second change of the batch touches, go through
the general join. The result is the same state the general path writes, byte for byte.

Byte layouts (all integers big-endian; signed values offset by 2**63 so that byte order is
numeric order, which lets SQL compare versions with ``>`` on ``bytea``/``String``):

- cell version: ``ts (8) | rank (1) | local deletion time (8) | value bytes``
- liveness: ``ts (8) | expiring (1) | expiry (8) | ttl (4)``
- deletion: ``ts (8) | local deletion time (8)``

**Rows written at one timestamp.** A fresh row whose cells and liveness share one write
timestamp (every row an ``INSERT`` or a single-timestamp ``UPDATE`` creates) is stored in
short form: the row's ``_cdc_ts`` column holds that timestamp, each cell's state column holds
only its value bytes (the version is ``ts``, live, no expiry, those bytes) and the liveness is
empty bytes (``ts``, no TTL) or null. Every other row has a null ``_cdc_ts`` and the full
encodings; the general path always writes those, so a row leaves the short form the first
time it is merged. :func:`decode_row_state` reads both.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

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
from cdc_platform.gc_pause import paused_gc
from cdc_platform.schema.model import Column, Table
from cdc_platform.schema.types import NativeType
from cdc_platform.schema.values import EMPTY, InvalidValue

if TYPE_CHECKING:
    from cdc_platform.destinations.columnar import FreshColumns

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


def prefix_end(prefix: bytes) -> bytes | None:
    """The least byte string greater than every string that starts with ``prefix`` (``None``:
    there is none, the prefix is all ``0xff``).

    The row keys of a partition are exactly the keys in ``[pk, prefix_end(pk))`` for its
    encoded partition key ``pk`` (:func:`encode_key` is prefix-free), so an index on the row
    key serves partition lookups.
    """
    head = prefix.rstrip(b"\xff")
    return head[:-1] + bytes([head[-1] + 1]) if head else None


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


def decode_row_id(raw_key: bytes, n_pk: int, n_ck: int) -> RowId:
    """The row id of a stored regular row's ``_cdc_key`` (null components read as empty)."""
    parts = decode_key(raw_key, n_pk + n_ck)
    pk: Key = tuple(p if p is not None else b"" for p in parts[:n_pk])
    return pk, tuple(parts[n_pk:])


def decode_row_state(columns: Sequence[Column], record: Sequence[Any], static: bool) -> RowState:
    """A stored row's reconciliation state.

    ``record`` is the key, one state column per value column (``columns``, in order: a cell
    version, or a collection state for multi-cell columns), then, for regular rows, the
    liveness, the row deletion and ``_cdc_ts`` (set for a row in short form, see the module
    docstring); ``None`` for what the row does not have.
    """
    st = RowState()
    ts = None if static else record[3 + len(columns)]
    for c, raw in zip(columns, record[1 : 1 + len(columns)], strict=True):
        if raw is None:
            continue
        if c.type.is_multicell:
            st.collections[c.name] = decode_collection(raw)
        elif ts is not None:
            st.cells[c.name] = Version(ts, 0, 0, bytes(raw))
        else:
            st.cells[c.name] = decode_version(raw)
    if not static:
        lv, dl = record[1 + len(columns)], record[2 + len(columns)]
        if lv is None:
            st.liveness = None
        else:
            st.liveness = Liveness(ts) if ts is not None else decode_liveness(lv)
        st.deletion = decode_deletion(dl) if dl is not None else None
    return st


@dataclass
class RowWrite:
    pk: Key
    ck: ClusteringKey | None
    state: RowState
    shadow: int
    materialised: Materialised


@dataclass
class WritePlan:
    """What applying a batch writes: merged rows, grown partition records and fresh rows."""

    rows: list[RowWrite]
    partitions: list[tuple[Key, PartitionRecord]]
    fresh: FreshRows | None = None
    columns: FreshColumns | None = None  # fresh rows of a change batch, column-wise

    @property
    def row_count(self) -> int:
        fresh = len(self.fresh) if self.fresh is not None else 0
        return len(self.rows) + fresh + (len(self.columns) if self.columns is not None else 0)


class StateStore(Protocol):
    """What a destination provides for :func:`plan_batch`: read stored state."""

    def load_partitions(self, table: Table, pks: Sequence[Key]) -> dict[Key, PartitionRecord]: ...

    def load_rows(self, table: Table, ids: Sequence[RowId]) -> dict[RowId, RowState]: ...

    def load_partition_rows(self, table: Table, pks: Sequence[Key]) -> dict[RowId, RowState]: ...

    def stored_keys(self, table: Table, keys: Sequence[bytes], pks: Sequence[bytes]) -> set[bytes]:
        """Which row keys (:func:`row_key`) have a stored row or a stored partition record.

        ``pks[i]`` is the encoded partition key (:func:`encode_key`) of ``keys[i]``.
        """
        ...

    def stored_fresh(self, table: Table, fresh: FreshColumns) -> tuple[set[bytes], set[bytes]]:
        """Of these fresh-row candidates: the keys :meth:`stored_keys` would name, and those of
        them whose stored row is exactly what they would write
        (:func:`~cdc_platform.destinations.columnar.unchanged_keys`)."""
        ...


@paused_gc()
def plan_batch(table: Table, changes: Iterable[RowChange], store: StateStore) -> WritePlan:
    """Computes ``stored ⊔ batch`` for every row and partition the batch touches.

    Rows the batch creates come back column by column in :attr:`WritePlan.fresh` (see the
    module docstring); everything else as merged :class:`RowWrite` rows.
    """
    fresh, rest = split_fresh(table, changes)
    if fresh:
        stored = store.stored_keys(table, fresh.keys, fresh.pks)
        if stored:
            keep = [i for i, k in enumerate(fresh.keys) if k not in stored]
            rest.extend(fresh.changes[i] for i, k in enumerate(fresh.keys) if k in stored)
            fresh = fresh.select(keep)
    plan = _plan_merged(table, rest, store)
    plan.fresh = fresh if fresh else None
    return plan


def _plan_merged(table: Table, changes: Iterable[RowChange], store: StateStore) -> WritePlan:
    """The general path: ``stored ⊔ batch`` by loading and joining row states."""
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


# --------------------------------------------------------------------------------------------
# Fresh rows: the column-wise path for rows a batch creates


@dataclass
class FreshRows:
    """Rows created by a batch, column by column (all lists are aligned by row).

    Every row exists (it has liveness or a live cell), never expires and has nothing to
    refresh; it has no row deletion and no collection state. ``values[j]``/``versions[j]``
    belong to ``table.regular[j]``: the typed value as the change carried it (``None``:
    no cell; never ``EMPTY`` or an :class:`InvalidValue`, whose rows take the general path)
    and the stored cell state: in short form (``timestamps[i]`` set, see the module
    docstring) the value bytes, otherwise the encoded version (:func:`encode_version`).

    Attributes:
        changes: the change each row comes from.
        keys: encoded row keys (:func:`row_key`).
        pks: encoded partition keys (:func:`encode_key`).
        key_values: per key column (partition key, then clustering), the typed values.
        values: per regular column, the typed values.
        versions: per regular column, the stored cell states (value bytes in short form).
        liveness: encoded primary-key liveness (:func:`encode_liveness`; empty in short form),
            ``None`` for none.
        timestamps: the row's one write timestamp (short form), or ``None`` (full encodings).
    """

    changes: list[RowChange]
    keys: list[bytes]
    pks: list[bytes]
    key_values: list[list[Any]]
    values: list[list[Any]]
    versions: list[list[bytes | None]]
    liveness: list[bytes | None]
    timestamps: list[int | None]

    def __len__(self) -> int:
        return len(self.keys)

    def select(self, rows: Sequence[int]) -> FreshRows:
        """These rows only, in this order."""

        def pick(xs: list[Any]) -> list[Any]:
            return [xs[i] for i in rows]

        return FreshRows(
            pick(self.changes),
            pick(self.keys),
            pick(self.pks),
            [pick(c) for c in self.key_values],
            [pick(c) for c in self.values],
            [pick(c) for c in self.versions],
            pick(self.liveness),
            pick(self.timestamps),
        )


# Python types whose values survive serialize → deserialize unchanged, per CQL type: a key
# value of one of these is stored typed as the change carries it (the general path stores
# the deserialized key bytes; for these types that is the same value).
_EXACT_KEY_TYPES: dict[str, type] = {
    "ascii": str,
    "text": str,
    "blob": bytes,
    "boolean": bool,
    "tinyint": int,
    "smallint": int,
    "int": int,
    "bigint": int,
    "timestamp": int,
    "time": int,
    "date": int,
    "double": float,
    "uuid": uuid.UUID,
    "timeuuid": uuid.UUID,
}
_SIZED = struct.Struct(">i")
_MASK = 0xFFFFFFFFFFFFFFFF


def _sized_encoder(c: Column) -> Callable[[Any], bytes]:
    """Encodes a key component the way :func:`encode_key` does (length, then serialized value)."""
    encode = c.encode
    sized = _SIZED.pack
    fixed = {"bigint": ">iq", "timestamp": ">iq", "time": ">iq", "int": ">ii", "double": ">id"}
    name = c.type.name if isinstance(c.type, NativeType) else ""
    if name in fixed:
        st = struct.Struct(fixed[name])
        width = st.size - 4
        pack = st.pack
        return lambda v: pack(width, v)

    def generic(v: Any) -> bytes:
        raw = encode(v)
        return sized(len(raw)) + raw

    return generic


# Serializers of valid, non-empty values that are C functions (no Python frame per cell);
# each does what :func:`cdc_platform.schema.values.encoder` does for these values.
_PLAIN_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "text": str.encode,  # UTF-8
    "blob": bytes,
    "tinyint": struct.Struct(">b").pack,
    "smallint": struct.Struct(">h").pack,
    "int": struct.Struct(">i").pack,
    "bigint": struct.Struct(">q").pack,
    "timestamp": struct.Struct(">q").pack,
    "time": struct.Struct(">q").pack,
    "float": struct.Struct(">f").pack,
    "double": struct.Struct(">d").pack,
}


def _value_encoder(c: Column) -> Callable[[Any], bytes]:
    """Serializes a cell value that is neither ``None``, ``EMPTY`` nor invalid (see :func:`split_fresh`)."""
    if isinstance(c.type, NativeType) and c.type.name in _PLAIN_ENCODERS:
        return _PLAIN_ENCODERS[c.type.name]
    return c.encode


@dataclass
class _FreshSpec:
    """What :func:`split_fresh` needs of a table, computed once."""

    key_names: list[str]
    n_pk: int
    key_types: list[type]
    key_encoders: list[Callable[[Any], bytes]]
    regular: dict[str, tuple[int, Callable[[Any], bytes]]]  # simple regular columns
    others: frozenset[str]  # columns whose cells a fresh row cannot hold (keys, static, collections)
    n_regular: int


_SPECS: dict[int, tuple[Table, _FreshSpec | None]] = {}


def _fresh_spec(table: Table) -> _FreshSpec | None:
    cached = _SPECS.get(id(table))
    if cached is not None and cached[0] is table:
        return cached[1]
    spec: _FreshSpec | None = None
    keys = table.partition_key + table.clustering
    exact = [_EXACT_KEY_TYPES.get(c.type.name) if isinstance(c.type, NativeType) else None for c in keys]
    if all(t is not None for t in exact) and not any(c.is_counter for c in table.columns):
        regular = {
            c.name: (j, _value_encoder(c)) for j, c in enumerate(table.regular) if not c.type.is_multicell
        }
        spec = _FreshSpec(
            [c.name for c in keys],
            len(table.partition_key),
            [t for t in exact if t is not None],
            [_sized_encoder(c) for c in keys],
            regular,
            frozenset(c.name for c in table.columns if c.name not in regular),
            len(table.regular),
        )
    if len(_SPECS) > 1024:
        _SPECS.clear()
    _SPECS[id(table)] = (table, spec)
    return spec


def split_fresh(table: Table, changes: Iterable[RowChange]) -> tuple[FreshRows, list[RowChange]]:
    """Splits a batch into rows it may create (column-wise) and changes for the general path.

    A ``row`` change is a fresh-row candidate when it has no row deletion, no TTL, only live
    simple cells of regular columns (each column once) with valid values, key values of an
    exactly round-tripping type, and liveness or a cell; and when no other change of the batch
    touches its row or deletes in its partition. Whether its key is stored is for the caller
    to ask (:meth:`StateStore.stored_keys`).

    Returns:
        The candidates, and every other change (in no particular order).
    """
    spec = _fresh_spec(table)
    rest: list[RowChange] = []
    if spec is None:
        rest.extend(changes)
        return FreshRows([], [], [], [], [], [], [], []), rest
    row_kind = ChangeKind.ROW
    names = spec.key_names
    n_pk = spec.n_pk
    checks = list(zip(names, spec.key_types, spec.key_encoders, strict=True))
    regular = spec.regular
    others = spec.others
    n_regular = spec.n_regular
    n_keys = len(names)
    pk = b""
    head = _VERSION_HEAD.pack  # (timestamp, rank LIVE, no local deletion time)
    live_head = _LIVENESS.pack  # (timestamp, not expiring, no expiry, no TTL)
    no_time = _u(0)
    offset = _OFFSET
    mask = _MASK
    invalid = InvalidValue
    empty = EMPTY
    cands: list[RowChange] = []
    keys: list[bytes] = []
    pks: list[bytes] = []
    key_values: list[list[Any]] = [[] for _ in names]
    values: list[list[Any]] = [[] for _ in range(n_regular)]
    versions: list[list[bytes | None]] = [[] for _ in range(n_regular)]
    liveness: list[bytes | None] = []
    timestamps: list[int | None] = []
    # One row's values, value bytes and cell timestamps while it is checked; appended
    # column-wise once accepted. Per-row containers would be allocated (and tracked by the
    # cyclic GC) a million times.
    row_values: list[Any] = [None] * n_regular
    row_versions: list[bytes | None] = [None] * n_regular
    row_stamps: list[int] = [0] * n_regular
    row_keys: list[Any] = [None] * len(names)
    blank = [None] * n_regular
    key_range = range(len(names))
    regular_range = range(n_regular)
    seen: dict[bytes, int] = {}  # row key → candidate index (-1: the key is not fresh)
    dead: set[int] = set()
    for ch in changes:
        if ch.kind is not row_kind or ch.deletion_timestamp is not None or ch.liveness_ttl:
            rest.append(ch)
            continue
        try:
            pkd = ch.partition_key
            key = b""
            for i in key_range:
                name, want, enc = checks[i]
                if i == n_pk:
                    pk = key
                    pkd = ch.clustering
                v = pkd[name]
                if type(v) is not want:
                    raise TypeError(name)
                row_keys[i] = v
                key += enc(v)
            if n_keys == n_pk:
                pk = key
            lts = ch.liveness_timestamp
            live = lts is not None
            common = lts  # the row's one timestamp while ``short``
            short = True
            for cell in ch.cells:
                slot = regular.get(cell.column)
                if slot is None:
                    if cell.column in others:
                        raise TypeError(cell.column)
                    continue  # not in the table (dropped): never visible
                j, enc = slot
                v = cell.value
                if (
                    cell.deleted
                    or cell.ttl
                    or cell.collection_deletion
                    or row_versions[j] is not None
                    or v is None
                    or v is empty
                    or type(v) is invalid
                ):
                    raise TypeError(cell.column)
                ts = cell.timestamp
                if common is None:
                    common = ts
                elif ts != common:
                    short = False
                row_versions[j] = enc(v)
                row_stamps[j] = ts
                row_values[j] = v
                live = True
            if not live:
                raise TypeError("no liveness and no live cell: the row does not exist")
            first = seen.get(key)
            if first is not None:
                # A second change of the row: the general path merges them.
                if first >= 0:
                    dead.add(first)
                    seen[key] = -1
                raise TypeError("changed twice")
        except Exception:  # anything unusual is the general path's to handle (or to report)
            rest.append(ch)
            row_values[:] = blank
            row_versions[:] = blank
            continue
        seen[key] = len(keys)
        cands.append(ch)
        keys.append(key)
        pks.append(pk)
        for i in key_range:
            key_values[i].append(row_keys[i])
        for j in regular_range:
            values[j].append(row_values[j])
        if short:
            for j in regular_range:
                versions[j].append(row_versions[j])
            timestamps.append(common)
            liveness.append(None if lts is None else b"")
        else:
            for j in regular_range:
                raw = row_versions[j]
                versions[j].append(
                    None if raw is None else head((row_stamps[j] + offset) & mask, 0, no_time) + raw
                )
            timestamps.append(None)
            liveness.append(None if lts is None else live_head((lts + offset) & mask, 0, no_time, 0))
        row_values[:] = blank
        row_versions[:] = blank
    # Rows the general path touches, and partitions it deletes in, are not fresh.
    touched: set[bytes] = set()
    deleting: set[bytes] = set()
    for ch in rest:
        if ch.kind is row_kind:
            touched.add(
                row_key(partition_bytes(table, ch.partition_key), clustering_bytes(table, ch.clustering))
            )
        elif ch.kind is ChangeKind.PARTITION_DELETE or ch.kind is ChangeKind.RANGE_DELETE:
            deleting.add(encode_key(partition_bytes(table, ch.partition_key)))
    if touched or deleting:
        dead.update(
            i for i, (k, p) in enumerate(zip(keys, pks, strict=True)) if k in touched or p in deleting
        )
    n = len(keys)
    fresh = FreshRows(cands, keys, pks, key_values, values, versions, liveness, timestamps)
    if dead:
        rest.extend(cands[i] for i in sorted(dead))
        fresh = fresh.select([i for i in range(n) if i not in dead])
    return fresh, rest


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
