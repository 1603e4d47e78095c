"""Fresh rows read column-wise from a change batch (``columnar``) against the object path.

``fresh_columns`` must select the same rows as ``split_fresh`` on the batch's changes and
encode them byte for byte alike; the vectorised PostgreSQL dumps and ClickHouse conversions
must equal the value-by-value ones; and ``apply_batch`` must leave each destination equal to
the model, like ``apply`` (the mixed-batch tests of ``test_fresh_rows`` run both).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_platform.changes.arrow import ChangeBatch, column_values
from cdc_platform.changes.records import RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.destinations.clickhouse.client import Capabilities
from cdc_platform.destinations.clickhouse.typemap import arrow_values, mapping
from cdc_platform.destinations.columnar import fresh_columns
from cdc_platform.destinations.postgres.copy import ColumnCopy
from cdc_platform.destinations.postgres.sink import PostgresDestination
from cdc_platform.destinations.postgres.typemap import copy_type, pg_column
from cdc_platform.destinations.state import split_fresh
from cdc_platform.schema.cql import parse_schema
from cdc_platform.schema.model import Table
from cdc_platform_tests.destinations.test_fresh_rows import _SETTINGS, _rows, stagger
from cdc_platform_tests.strategies import values_for
from cdc_platform_tests.workloads import NOW, PLAIN, TABLE

TYPES = parse_schema(
    """
    CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
    CREATE TABLE ks.all_types (
        k text, c1 blob, c2 boolean, c3 tinyint, c4 smallint, c5 int, c6 bigint, c7 timestamp,
        c8 time, c9 date, c10 double, c11 uuid, c12 timeuuid,
        v_ascii ascii, v_text text, v_blob blob, v_bool boolean, v_tiny tinyint, v_small smallint,
        v_int int, v_big bigint, v_varint varint, v_float float, v_double double, v_decimal decimal,
        v_uuid uuid, v_timeuuid timeuuid, v_ts timestamp, v_date date, v_time time,
        v_duration duration, v_inet inet, v_list frozen<list<int>>, v_tuple frozen<tuple<int, text>>,
        v_tags set<text>,
        PRIMARY KEY (k, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12)
    ) WITH ID = 00000000-0000-1000-8000-0000000000c1;
    """
)
ALL_TYPES = TYPES.table("ks.all_types")


@st.composite
def _inserts(draw: st.DrawFn) -> list[RowChange]:
    """INSERTs of ``ks.all_types`` with any subset of the simple columns (fresh rows, mostly)."""
    out: list[RowChange] = []
    simple = [c for c in ALL_TYPES.regular if not c.type.is_multicell]
    for _ in range(draw(st.integers(1, 12))):
        key = {c.name: draw(values_for(c.type)) for c in ALL_TYPES.clustering}
        values = {c.name: draw(values_for(c.type)) for c in simple if draw(st.booleans())}
        b = UpdateBuilder(ALL_TYPES, {"k": draw(values_for(ALL_TYPES.partition_key[0].type))}, now=NOW)
        b.insert(key, values, draw(st.integers(-(2**62), 2**62)))
        delta = draw(st.sampled_from([0, 0, 1, -1]))  # its cells at different timestamps
        out += [stagger(c, delta) for c in changes_of_update(b.build())]
    return out


def _same(a: list[Any], b: list[Any]) -> bool:
    """Equal lists, NaN equal to NaN."""

    def norm(v: Any) -> Any:
        return "NaN" if isinstance(v, float) and math.isnan(v) else v

    return [norm(v) for v in a] == [norm(v) for v in b]


def _compare(table: Table, changes: list[RowChange]) -> None:
    batch = ChangeBatch.from_changes(table, changes)
    fresh, rest = fresh_columns(table, batch.data)
    objects, _ = split_fresh(table, batch.to_changes())
    assert fresh is not None
    assert fresh.keys.to_pylist() == objects.keys
    assert fresh.pks.to_pylist() == objects.pks
    assert fresh.liveness.to_pylist() == objects.liveness
    assert fresh.timestamps.to_pylist() == objects.timestamps
    for j, c in enumerate(table.regular):
        assert fresh.versions[j].to_pylist() == objects.versions[j], c.name
        assert _same(column_values(c.type, fresh.values[j]), objects.values[j]), c.name
    for j, c in enumerate(table.partition_key + table.clustering):
        assert _same(column_values(c.type, fresh.key_values[j]), objects.key_values[j]), c.name
    assert sum(rest.to_pylist()) == len(changes) - len(fresh)


@settings(max_examples=150, **_SETTINGS)  # type: ignore[arg-type]
@given(data=st.data(), table=st.sampled_from([PLAIN, TABLE]))
def test_fresh_columns_select_and_encode_what_split_fresh_does(data: st.DataObject, table: Table) -> None:
    _compare(table, data.draw(_rows(table, range(6), 30)))


@settings(max_examples=60, **_SETTINGS)  # type: ignore[arg-type]
@given(changes=_inserts())
def test_fresh_columns_encode_every_type_as_the_object_path(changes: list[RowChange]) -> None:
    _compare(ALL_TYPES, changes)


@pytest.fixture(scope="module")
def copier(postgres_url: str) -> Iterator[ColumnCopy]:
    with psycopg.connect(postgres_url) as conn:
        yield ColumnCopy(conn)


@settings(max_examples=40, **_SETTINGS)  # type: ignore[arg-type]
@given(changes=_inserts())
def test_postgres_column_dumps_equal_the_value_by_value_dumps(
    copier: ColumnCopy, changes: list[RowChange]
) -> None:
    data = ChangeBatch.from_changes(ALL_TYPES, changes).data
    for c in ALL_TYPES.partition_key + ALL_TYPES.clustering + ALL_TYPES.regular:
        column = data.column(c.name).combine_chunks()
        values = (
            column
            if c.is_primary_key
            else pa.compute.struct_field(column, "value")
            if not c.type.is_multicell
            else None
        )
        if values is None:
            continue
        expected = copier.dump(copy_type(c.type), pg_column(c.type)(column_values(c.type, values)))
        got = copier.dump_arrow(c.type, values)
        assert [
            None if v is None else bytes(v) for v in (got.to_pylist() if isinstance(got, pa.Array) else got)
        ] == [None if v is None else bytes(v) for v in expected], c.name


_CAPS = [
    Capabilities(),  # ClickHouse 18.16: Int64 timestamps, Date, UInt8 booleans
    Capabilities(datetime64=True, date32=True, bool_type=True),  # first DateTime64/Date32 releases
    Capabilities(datetime64=True, date32=True, bool_type=True, wide_dates=True),
]


@settings(max_examples=40, **_SETTINGS)  # type: ignore[arg-type]
@given(changes=_inserts(), caps=st.sampled_from(_CAPS))
def test_clickhouse_column_conversions_equal_the_value_by_value_ones(
    changes: list[RowChange], caps: Capabilities
) -> None:
    data = ChangeBatch.from_changes(ALL_TYPES, changes).data
    converted = 0
    for c in ALL_TYPES.partition_key + ALL_TYPES.clustering + ALL_TYPES.regular:
        if c.type.is_multicell:
            continue
        column = data.column(c.name).combine_chunks()
        values = column if c.is_primary_key else pa.compute.struct_field(column, "value")
        mapped = mapping(c.type, caps)
        got = arrow_values(c.type, mapped, values)
        if got is None:
            continue
        converted += 1
        expected = pa.array(
            [mapped.convert(v) for v in column_values(c.type, values)], type=mapped.ch.arrow()
        )
        assert got.type == expected.type and _same(got.to_pylist(), expected.to_pylist()), c.name
    assert converted >= 14  # text, blob, booleans, integers, floats, timestamps, dates, time


# --------------------------------------------------------------------------------------------
# apply_batch against the model: test_fresh_rows runs its mixed batches both ways.


@settings(max_examples=10, **_SETTINGS)  # type: ignore[arg-type]
@given(changes=_inserts())
def test_every_type_loads_alike_through_apply_batch_and_apply(
    postgres_url: str, changes: list[RowChange]
) -> None:
    """The column-wise write (typed values, versions) stores what the object path stores."""
    import uuid

    from cdc_platform.changes.merge import canonical

    a = PostgresDestination(postgres_url, schema_prefix=f"t{uuid.uuid4().hex[:10]}_")
    b = PostgresDestination(postgres_url, schema_prefix=f"t{uuid.uuid4().hex[:10]}_")
    try:
        a.apply(ALL_TYPES, changes)
        b.apply_batch(ALL_TYPES, ChangeBatch.from_changes(ALL_TYPES, changes))
        assert canonical(ALL_TYPES, a.read_state(ALL_TYPES, NOW)) == canonical(
            ALL_TYPES, b.read_state(ALL_TYPES, NOW)
        )
        layout = a.layout(ALL_TYPES)
        columns = ", ".join(f'"{n}"' for n, _ in layout.main_columns())
        with psycopg.connect(postgres_url) as conn:
            # repr: NaN keys and values compare equal as text, not as floats.
            rows = [
                sorted(
                    map(
                        repr,
                        conn.execute(
                            f'SELECT {columns} FROM "{d.layout(ALL_TYPES).schema}"."{layout.main}"'
                        ).fetchall(),
                    )
                )
                for d in (a, b)
            ]
        assert rows[0] == rows[1]  # typed columns too, not only the state dumps read
    finally:
        a.close()
        b.close()
