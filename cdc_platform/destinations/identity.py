"""Change ids and partition keys of a staged batch, column-wise.

:func:`~cdc_platform.changes.identity.change_id` hashes one
:class:`~cdc_platform.changes.records.RowChange`'s content; turning a staged batch back into
change objects and hashing each costs tens of microseconds per change. Most changes of a load
are *plain row changes*: ``row`` changes of simple (non-collection, non-static) cells, every
key component and value decoded. For those the same hashed bytes are assembled here over whole
columns of the batch (Arrow compute and numpy) and hashed in one pass; the other changes go
through the object path. Both the TimescaleDB history (:mod:`.timescaledb.columnar`, whose
rows are keyed by these ids) and the load stage's metadata (distinct changes and partitions
of a batch) use it; tests compare every id with ``change_id``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cdc_platform.changes.arrow import ChangeBatch, field_name
from cdc_platform.changes.identity import change_id
from cdc_platform.changes.merge import Key, partition_bytes
from cdc_platform.changes.records import ChangeKind
from cdc_platform.destinations.columnar import (
    Part,
    column_of,
    decimal,
    either,
    join,
    maybe,
    only,
    serialized,
    sized,
)
from cdc_platform.destinations.state import decode_key, encode_key

if TYPE_CHECKING:
    from cdc_platform.schema.model import Column, Table

_NULL = b"\xff\xff\xff\xff"  # a null field of the hashed content


@dataclass
class Cells:
    """One simple column's cells in the plain rows (absent where ``present`` is false).

    ``ttl`` and ``local_deletion_time`` are decimal text, as the hashed content has them.
    """

    column: Column
    present: pa.Array
    value: pa.Array
    timestamp: pa.Array
    ttl: pa.Array
    local_deletion_time: pa.Array
    deleted: pa.Array  # no nulls


@dataclass
class PlainRows:
    """A batch's plain row changes, column-wise.

    Attributes:
        positions: each row's position in the batch.
        total: how many changes the batch holds.
        rows: those changes (the batch's rows at ``positions``).
        cells: per simple column with a cell in any of them, in column-name order.
        when: each change's write time, its greatest write or deletion timestamp (µs; null
            where it has none).
        ints: liveness timestamp, ttl and expiry, deletion timestamp and time.
        pk: encoded partition keys (:func:`~cdc_platform.destinations.state.encode_key`).
        ck: encoded clusterings (a constant without clustering columns).
        ids: change ids, 16 bytes each (``uuid.UUID.bytes`` of ``change_id``).
    """

    positions: np.ndarray
    total: int
    rows: pa.Table
    cells: list[Cells]
    when: pa.Array
    ints: list[pa.Array]
    pk: pa.Array
    ck: Part
    ids: list[bytes]

    def __len__(self) -> int:
        return self.rows.num_rows

    def column(self, name: str) -> pa.Array:
        return self.rows.column(name).combine_chunks()

    def others(self) -> np.ndarray:
        """A boolean mask of the batch's changes that are not these rows."""
        out = np.ones(self.total, dtype=bool)
        out[self.positions] = False
        return out

    def take(self, index: Sequence[int] | np.ndarray) -> PlainRows:
        """These rows only, in this order."""
        at = np.asarray(index, dtype=np.int64)
        taken = pa.array(at)

        def pick(a: pa.Array) -> pa.Array:
            return a.take(taken)

        cells = [
            Cells(
                x.column,
                pick(x.present),
                pick(x.value),
                pick(x.timestamp),
                pick(x.ttl),
                pick(x.local_deletion_time),
                pick(x.deleted),
            )
            for x in self.cells
        ]
        return PlainRows(
            self.positions[at],
            self.total,
            self.rows.take(taken),
            cells,
            pick(self.when),
            [pick(a) for a in self.ints],
            pick(self.pk),
            self.ck if isinstance(self.ck, bytes) else pick(self.ck),
            [self.ids[i] for i in at],
        )


def plain_rows(table: Table, data: pa.Table) -> PlainRows | None:
    """The plain row changes of a batch's rows, or ``None`` when the table cannot have any
    (counter tables: their contexts are hashed too) or the batch is empty."""
    n = data.num_rows
    if n == 0 or any(c.is_counter for c in table.columns):
        return None
    ok = pc.equal(data.column("_cdc_kind").combine_chunks(), ChangeKind.ROW.value)
    raw = data.column("_cdc_raw").combine_chunks()
    ok = pc.and_(ok, pc.fill_null(pc.equal(pc.list_value_length(raw), 0), True))
    keys = table.partition_key + table.clustering
    for c in keys:
        ok = pc.and_(ok, column_of(data, c.name).is_valid())
    for c in table.static + [c for c in table.regular if c.type.is_multicell]:
        ok = pc.and_(ok, column_of(data, c.name).is_null())
    ok = pc.fill_null(ok, False)
    rows = data.filter(ok)

    def col(name: str) -> pa.Array:
        return rows.column(name).combine_chunks()

    stamps = [col("_cdc_liveness_timestamp"), col("_cdc_deletion_timestamp")]
    cells: list[Cells] = []
    hashed: list[Part] = []
    for c in sorted((c for c in table.regular if not c.type.is_multicell), key=lambda c: c.name):
        if field_name(c.name) not in rows.column_names:  # added since the batch was staged
            continue
        cell = column_of(rows, c.name)
        present = cell.is_valid()
        if not pc.any(present).as_py():
            continue
        cells.append(
            Cells(
                c,
                present,
                pc.struct_field(cell, "value"),
                pc.struct_field(cell, "timestamp"),
                decimal(pc.struct_field(cell, "ttl")),
                decimal(pc.struct_field(cell, "local_deletion_time")),
                pc.fill_null(pc.struct_field(cell, "deleted"), False),
            )
        )
        x = cells[-1]
        stamps.append(x.timestamp)
        hashed += only(
            present,
            encode_key((c.name.encode(),)) + _NULL,  # the column, no path
            sized(serialized(c.type, x.value)),
            sized(decimal(x.timestamp)),
            maybe(x.ttl, sized, _NULL),
            maybe(x.local_deletion_time, sized, _NULL),
            either(x.deleted, b"\x00\x00\x00\x01d", b"\x00\x00\x00\x01l"),
            b"\x00\x00\x00\x01-",
        )
    when = pc.max_element_wise(*stamps, skip_nulls=True)
    # Keys: each component length-prefixed, as encode_key (and the change id) has them.
    parts = [sized(serialized(c.type, col(field_name(c.name)))) for c in keys]
    n_pk = len(table.partition_key)
    pk = join(parts[:n_pk])
    ck: Part = join(parts[n_pk:]) if len(parts) > n_pk else b""
    ints = [
        col(name)
        for name in (
            "_cdc_liveness_timestamp",
            "_cdc_liveness_ttl",
            "_cdc_liveness_expires",
            "_cdc_deletion_timestamp",
            "_cdc_deletion_time",
        )
    ]
    head = encode_key((table.keyspace.encode(), table.name.encode(), b"row"))
    content = join([head, pk, ck, *[maybe(decimal(v), sized, _NULL) for v in ints], _NULL * 2, *hashed])
    positions = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    return PlainRows(positions, n, rows, cells, when, ints, pk, ck, _ids(content))


def batch_identity(table: Table, batch: ChangeBatch) -> tuple[set[bytes], set[bytes]]:
    """The distinct change ids (16 bytes each) and encoded partition keys of a batch: column-wise
    for its plain row changes, through change objects for the others."""
    plain = plain_rows(table, batch.data)
    ids: set[bytes] = set()
    pks: set[bytes] = set()
    rest: np.ndarray | None = None
    if plain is not None:
        ids.update(plain.ids)
        pks.update(plain.pk.to_pylist())
        rest = plain.others()
    if rest is None or rest.any():
        others = batch if rest is None else ChangeBatch(table, batch.data.filter(pa.array(rest)))
        for c in others.to_changes():
            ids.add(change_id(table, c).bytes)
            pks.add(encode_key(partition_bytes(table, c.partition_key)))
    return ids, pks


def batch_partitions(table: Table, batch: ChangeBatch) -> list[Key]:
    """The partitions a batch touches: their keys' serialized components, in byte order."""
    _, pks = batch_identity(table, batch)
    # Partition key components are never null: each decodes to bytes.
    return [cast("Key", decode_key(pk, len(table.partition_key))) for pk in sorted(pks)]


def _ids(content: pa.Array) -> list[bytes]:
    """Change ids: BLAKE2b-128 of each row's content with the UUID version 5 bits set."""
    blake2b = hashlib.blake2b
    digests = np.frombuffer(
        b"".join([blake2b(b, digest_size=16).digest() for b in content.to_pylist()]), dtype=np.uint8
    ).reshape(-1, 16)
    digests = digests.copy()
    digests[:, 6] = (digests[:, 6] & 0x0F) | 0x50
    digests[:, 8] = (digests[:, 8] & 0x3F) | 0x80
    blob = digests.tobytes()
    return [blob[i : i + 16] for i in range(0, len(blob), 16)]
