"""Content identity of a change: equal for replica copies and replays of the same write.

The same mutation read from three replicas' commit logs (or read twice) has different
provenance (node, segment, position) but the same content. :func:`change_id` hashes the
content only — table, kind, keys, cells with their versions, liveness, deletion, range —
so stores that must hold a change once (history, quarantine) can deduplicate on it.
"""

from __future__ import annotations

import hashlib
import struct
import uuid

from cdc_platform.changes.merge import (
    clustering_bytes,
    partition_bytes,
    path_bytes,
    value_bytes,
)
from cdc_platform.changes.records import ClusteringBound, RowChange
from cdc_platform.schema.model import Table
from cdc_platform.schema.types import cell_value_type

_NULL = b"\xff\xff\xff\xff"
_LENGTH = struct.Struct(">I").pack


def _field(out: list[bytes], raw: bytes | None) -> None:
    """Appends a length-prefixed field (``0xffffffff`` for null) to the hashed bytes."""
    if raw is None:
        out.append(_NULL)
    else:
        out.append(_LENGTH(len(raw)))
        out.append(raw)


def _int(out: list[bytes], v: int | None) -> None:
    _field(out, None if v is None else str(v).encode())


def _bound(out: list[bytes], table: Table, b: ClusteringBound | None) -> None:
    if b is None:
        _field(out, None)
        return
    parts = clustering_bytes(table, b.clustering)
    _int(out, len(parts))  # prefixes of different lengths must not run together
    for part in parts:
        _field(out, part)
    _field(out, b"1" if b.inclusive else b"0")


def change_id(table: Table, change: RowChange) -> uuid.UUID:
    """A UUID derived from a BLAKE2b hash of the change's content, provenance excluded.

    (The version bits read 5, "name-based"; the hash is BLAKE2b, not SHA-1.)
    """
    h: list[bytes] = []  # the fields, hashed at once (the same digest as hashing each in turn)
    _field(h, table.keyspace.encode())
    _field(h, table.name.encode())
    _field(h, change.kind.value.encode())
    for part in partition_bytes(table, change.partition_key):
        _field(h, part)
    for ck_part in clustering_bytes(table, change.clustering):
        _field(h, ck_part)
    for v in (
        change.liveness_timestamp,
        change.liveness_ttl,
        change.liveness_expires,
        change.deletion_timestamp,
        change.deletion_time,
    ):
        _int(h, v)
    _bound(h, table, change.range_start)
    _bound(h, table, change.range_end)
    for cell in sorted(change.cells, key=lambda c: (c.column, repr(c.path))):
        _field(h, cell.column.encode())
        column = table.by_name.get(cell.column)
        path: bytes | None = None
        vtype = None
        if column is not None:
            vtype = column.type
            if cell.path is not None and column.type.is_multicell:
                path = path_bytes(column.type, cell.path)
                vtype = cell_value_type(column.type, path)
        _field(h, path)
        if vtype is not None and cell.value is not None:
            _field(h, value_bytes(vtype, cell.value))
        elif cell.value is not None:
            # A column no longer in the table (dropped): its value still tells changes apart.
            _field(h, repr((cell.path, cell.value)).encode())
        else:
            _field(h, None)
        for v in (cell.timestamp, cell.ttl, cell.local_deletion_time):
            _int(h, v)
        _field(h, b"d" if cell.deleted else b"l")
        _field(h, b"c" if cell.collection_deletion else b"-")
    return uuid.UUID(bytes=hashlib.blake2b(b"".join(h), digest_size=16).digest(), version=5)
