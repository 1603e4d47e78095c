"""Binary COPY streams built column by column.

psycopg's ``Copy.write_row`` formats one row at a time in Python; for the hundreds of
thousands of rows a load writes, most of that time goes to per-row and per-field overhead.
:class:`ColumnCopy` does the same work per column instead: each column's values are dumped by
the same binary dumpers ``write_row`` uses (chosen by type name, as ``Copy.set_types`` does,
in one call per column), and the rows of ``COPY … (FORMAT BINARY)`` are then assembled with
Arrow and numpy. The stream is byte for byte what ``write_row`` would send.

Binary COPY format (PostgreSQL docs, "COPY", binary format): the signature
``PGCOPY\\n\\377\\r\\n\\0``, a 32-bit flags field and a 32-bit header extension length (both 0);
per row a 16-bit field count, then per field a 32-bit length (-1 for NULL) and the bytes;
a 16-bit -1 ends the data. All integers are big-endian.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa

    from cdc_platform.schema.types import CqlType

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
# Rows per assembled chunk: keeps every Arrow binary array far below its 2 GiB offset limit.
_CHUNK_ROWS = 65_536


class ColumnCopy:
    """Dumps columns for binary COPY on one connection and assembles the stream.

    Args:
        conn: the connection (its adapters choose the dumpers, as for ``write_row``).
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        from psycopg.adapt import Transformer

        self._types = conn.adapters.types
        self._tx = Transformer(conn)

    def dump(self, copy_type: str, values: Sequence[Any]) -> list[Any]:
        """The binary form of each value (``None`` stays ``None``) of a column of ``copy_type``.

        ``bytea`` values that are ``bytes`` already are their own binary form.
        """
        if not values:
            return []
        if copy_type == "bytea" and all(v is None or type(v) is bytes for v in values):
            return list(values)
        from psycopg.adapt import PyFormat
        from psycopg.pq import Format

        n = len(values)
        self._tx.set_dumper_types([self._types.get_oid(copy_type)] * n, Format.BINARY)
        return list(self._tx.dump_sequence(values, [PyFormat.BINARY] * n))

    def dump_arrow(self, cql_type: CqlType, values: pa.Array) -> Any:
        """The binary form of each value of a typed change-batch column (nulls stay null).

        Common scalar types are dumped with Arrow and numpy; others value by value through
        the same conversion (:func:`.typemap.pg_column`) and dumpers as :meth:`dump`.
        """
        from cdc_platform.changes.arrow import column_values
        from cdc_platform.destinations.postgres.typemap import copy_type, pg_column

        if values.null_count == len(values):
            return [None] * len(values)
        dumped = arrow_binary(cql_type, values)
        if dumped is not None:
            return dumped
        return self.dump(copy_type(cql_type), pg_column(cql_type)(column_values(cql_type, values)))

    def stream(self, columns: Sequence[Sequence[Any]]) -> Iterator[bytes]:
        """The COPY data for rows given column by column (dumped values), in chunks.

        Raises:
            ValueError: the columns differ in length.
        """
        yield SIGNATURE
        n = len(columns[0]) if columns else 0
        if any(len(c) != n for c in columns):
            raise ValueError("COPY columns differ in length")
        for start in range(0, n, _CHUNK_ROWS):
            stop = min(n, start + _CHUNK_ROWS)
            yield _rows([c[start:stop] for c in columns])
        yield TRAILER


PG_EPOCH_DAYS = 10_957  # 2000-01-01, PostgreSQL's epoch, in days since 1970-01-01
# Binary COPY forms of fixed-width values: the big-endian numpy dtype per CQL type.
_FIXED_DUMPS = {
    "tinyint": ">i2",
    "smallint": ">i2",
    "int": ">i4",
    "bigint": ">i8",
    "time": ">i8",
    "float": ">f4",
    "double": ">f8",
    "boolean": "u1",
}


def arrow_binary(cql_type: CqlType, values: pa.Array) -> pa.Array | None:
    """The binary COPY form of a typed change-batch column, or ``None`` for types not done here.

    The same values :func:`.typemap.pg_value` gives: text holding U+0000 and timestamps or
    dates outside years 1–9999 become NULL.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from cdc_platform.destinations.columnar import fixed_width, null_unless, numbers
    from cdc_platform.destinations.postgres.typemap import MAX_DAY, MAX_MS, MIN_DAY, MIN_MS
    from cdc_platform.schema.types import NativeType

    if not isinstance(cql_type, NativeType):
        return None
    name = cql_type.name
    n = len(values)
    if name in _FIXED_DUMPS:
        dtype = np.dtype(_FIXED_DUMPS[name])
        out = fixed_width(numbers(values).astype(dtype).tobytes(), dtype.itemsize, n)
        return null_unless(out, values.is_valid()) if values.null_count else out
    if name in ("ascii", "text"):
        no_nul = pc.invert(pc.fill_null(pc.match_substring(values, "\x00"), True))
        return null_unless(values.cast(pa.binary()), no_nul)
    if name == "blob":
        return values
    if name == "timestamp":  # microseconds since 2000-01-01
        ms = numbers(values).astype(np.int64)
        out = fixed_width(((ms - PG_EPOCH_DAYS * 86_400_000) * 1000).astype(">i8").tobytes(), 8, n)
        valid = pa.array((ms >= MIN_MS) & (ms <= MAX_MS))
        return null_unless(out, pc.and_(valid, values.is_valid()))
    if name == "date":  # days since 2000-01-01
        days = numbers(values).astype(np.int64)
        out = fixed_width((days - PG_EPOCH_DAYS).astype(">i4").tobytes(), 4, n)
        valid = pa.array((days >= MIN_DAY) & (days <= MAX_DAY))
        return null_unless(out, pc.and_(valid, values.is_valid()))
    return None


def _rows(columns: Sequence[Sequence[Any]]) -> bytes:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from cdc_platform.destinations.columnar import fixed_width, length_prefixes

    n = len(columns[0])
    if n == 0:
        return b""
    parts: list[pa.Array] = [fixed_width(np.full(n, len(columns), dtype=">i2").tobytes(), 2, n)]
    for values in columns:
        arr = pa.array(values, pa.binary())
        parts.append(length_prefixes(arr))
        parts.append(arr)
    rows = pc.binary_join_element_wise(*parts, b"", null_handling="replace", null_replacement=b"")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32, count=n + 1, offset=rows.offset * 4)
    return rows.buffers()[2][int(offsets[0]) : int(offsets[-1])].to_pybytes()
