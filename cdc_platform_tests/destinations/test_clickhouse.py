"""ClickHouse destination against the merge model, on a real server (18.16 here) and on chdb (26.x).

Every destination test runs on both (the ``clickhouse_url`` fixture is parametrized), and the
fallbacks a newer engine does not need (no ``FINAL``, no ``Map``/``DateTime64``/…) are run on
both by forcing capabilities off.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_platform.changes.merge import TableModel, canonical
from cdc_platform.changes.records import RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder, timeuuid_for
from cdc_platform.destinations import naming
from cdc_platform.destinations.base import DestinationError
from cdc_platform.destinations.clickhouse import ClickHouseDestination
from cdc_platform.destinations.clickhouse.client import (
    PASSWORD_ENV,
    ClickHouseClient,
    ClickHouseURLError,
    ConnectionSpec,
    NativeClient,
    literal,
    qualified,
)
from cdc_platform.destinations.clickhouse.typemap import normal_type, quote_identifier
from cdc_platform.schema.cql import parse_schema
from cdc_platform.schema.model import Table
from cdc_platform.schema.values import Duration
from cdc_platform_tests.servers import CLICKHOUSE_TEST_USER, drop_clickhouse_databases
from cdc_platform_tests.workloads import NOW, PLAIN, TABLE, plain_workloads, workloads

# Every capability off, forced on any server: no DateTime64, Date32, Map or Bool (as on 18.16),
# and beyond 18.16 (which has named tuples and FINAL, see test_capabilities_are_detected) no
# named tuples and argMax instead of FINAL, so the oldest fallbacks run everywhere.
OLDEST = {
    "datetime64": False,
    "date32": False,
    "map": False,
    "bool_type": False,
    "named_tuple": False,
    "tuple_arrays": False,
    "final": False,
    "final_in_subquery": False,
}

_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}


@pytest.fixture()
def make_ch(clickhouse_url: str) -> Iterator[Any]:
    """More destinations on the same backend, each with databases of its own."""
    made: list[tuple[ClickHouseDestination, str]] = []

    def make(**kwargs: Any) -> ClickHouseDestination:
        prefix = f"t{uuid.uuid4().hex[:10]}_"
        dest = ClickHouseDestination(clickhouse_url, database_prefix=prefix, **kwargs)
        made.append((dest, prefix))
        return dest

    yield make
    for dest, prefix in made:
        dest.close()
        drop_clickhouse_databases(clickhouse_url, prefix)


def _batches(changes: list[RowChange], rng: random.Random) -> list[list[RowChange]]:
    """Random order, random duplication (replays, replica copies), random batch boundaries."""
    shuffled = changes + rng.sample(changes, k=min(len(changes), rng.randint(0, len(changes))))
    rng.shuffle(shuffled)
    out: list[list[RowChange]] = []
    i = 0
    while i < len(shuffled):
        n = rng.randint(1, 8)
        out.append(shuffled[i : i + n])
        i += n
    return out


def _model(table: Table, changes: list[RowChange]) -> TableModel:
    model = TableModel(table)
    model.apply_all(changes)
    return model


def _rows(dest: ClickHouseDestination, sql: str) -> list[tuple[Any, ...]]:
    return dest.client().query(sql)


def _current(dest: ClickHouseDestination, table: Table, columns: str, order: str) -> list[tuple[Any, ...]]:
    layout = dest.layout(table)
    return _rows(dest, f"SELECT {columns} FROM {layout.ident(layout.current)} ORDER BY {order}")


# --------------------------------------------------------------------------------------------
# Convergence (the property tests)


@settings(max_examples=12, **_SETTINGS)  # type: ignore[arg-type]
@given(changes=workloads(), seed=st.integers(0, 2**32), now=st.integers(NOW - 250, NOW + 250))
def test_converges_to_the_model_under_any_order_and_duplication(
    ch: ClickHouseDestination, changes: list[RowChange], seed: int, now: int
) -> None:
    ch.ensure_table(TABLE)
    ch.truncate(TABLE)
    for batch in _batches(changes, random.Random(seed)):
        ch.apply(TABLE, batch, batch="b")
    assert canonical(TABLE, ch.read_state(TABLE, now)) == canonical(
        TABLE, _model(TABLE, changes).visible(now)
    )


@settings(max_examples=8, **_SETTINGS)  # type: ignore[arg-type]
@given(changes=plain_workloads(), seed=st.integers(0, 2**32))
def test_plain_table_converges(ch: ClickHouseDestination, changes: list[RowChange], seed: int) -> None:
    ch.ensure_table(PLAIN)
    ch.truncate(PLAIN)
    for batch in _batches(changes, random.Random(seed)):
        ch.apply(PLAIN, batch)
    assert canonical(PLAIN, ch.read_state(PLAIN, NOW)) == canonical(
        PLAIN, _model(PLAIN, changes).visible(NOW)
    )


@pytest.fixture()
def oldest(make_ch: Any) -> ClickHouseDestination:
    dest: ClickHouseDestination = make_ch(capabilities=OLDEST)
    return dest


@settings(max_examples=6, **_SETTINGS)  # type: ignore[arg-type]
@given(changes=workloads(), seed=st.integers(0, 2**32), now=st.integers(NOW - 250, NOW + 250))
def test_converges_with_argmax_instead_of_final(
    oldest: ClickHouseDestination, changes: list[RowChange], seed: int, now: int
) -> None:
    oldest.ensure_table(TABLE)
    oldest.truncate(TABLE)
    for batch in _batches(changes, random.Random(seed)):
        oldest.apply(TABLE, batch)
    want = canonical(TABLE, _model(TABLE, changes).visible(now))
    assert canonical(TABLE, oldest.read_state(TABLE, now)) == want


def test_capabilities_are_detected(
    ch: ClickHouseDestination, clickhouse_url: str, clickhouse_started_here: bool
) -> None:
    caps = ch.capabilities
    families = {r[0].decode() for r in _rows(ch, "SELECT name FROM system.data_type_families")}
    assert caps.datetime64 == ("DateTime64" in families)
    assert caps.map == ("Map" in families)
    assert caps.final and caps.final_in_subquery
    if clickhouse_url.startswith("chdb:"):
        assert caps.version.startswith("2")
        assert caps.datetime64 and caps.date32 and caps.map and caps.bool_type and caps.named_tuple
        assert caps.tuple_arrays
        assert caps.low_cardinality and caps.wide_dates
    elif clickhouse_started_here:
        assert caps.version.startswith("18.16")
        assert not (caps.datetime64 or caps.date32 or caps.map or caps.bool_type or caps.low_cardinality)
        assert not caps.tuple_arrays
        assert caps.named_tuple  # 18.16 already had Tuple(name T, …)
    with pytest.raises(ValueError, match="unknown ClickHouse capabilities"):
        ClickHouseDestination(clickhouse_url, capabilities={"time_travel": True})


# --------------------------------------------------------------------------------------------
# Types

TYPES_SCHEMA = parse_schema(
    """
    CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
    CREATE TYPE ks.addr (street text, "Zip code" int, "we`ird" frozen<list<text>>);
    CREATE TYPE ks.odd ("1st" int);
    CREATE TABLE ks.types (
        k text, c timestamp,
        a ascii, t text, b blob, bo boolean, ti tinyint, si smallint, i int, bi bigint,
        vi varint, de decimal, f float, d double, u uuid, tu timeuuid,
        ts timestamp, ts_far timestamp, da date, da_old date, tm time, du duration, ip inet, ip6 inet,
        l list<int>, s set<text>, m map<text, int>, mf map<float, text>, ml frozen<list<frozen<map<int, text>>>>,
        tp tuple<int, text, frozen<list<int>>>, ud frozen<addr>, udn addr, od frozen<odd>,
        v vector<float, 3>, lt list<frozen<tuple<text, int>>>, nl text,
        PRIMARY KEY (k, c)
    ) WITH ID = 00000000-0000-1000-8000-000000000201;
    """
)
TYPES = TYPES_SCHEMA.table("ks.types")
_TU = timeuuid_for(1_700_000_000_000_000)
_U = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
_TS = 1_700_000_000_123
_FAR = 16_725_225_600_000  # 2500-01-01: beyond DateTime64
_DAY = (dt.date(2024, 2, 29) - dt.date(1970, 1, 1)).days
_OLD_DAY = (dt.date(1960, 1, 1) - dt.date(1970, 1, 1)).days  # before Date, within Date32
_VALUES: dict[str, Any] = {
    "a": "ascii",
    "t": "tëxt ✓",
    "b": b"\x00\xff'\\",
    "bo": True,
    "ti": -8,
    "si": -16,
    "i": -32,
    "bi": -(2**63),
    "vi": 2**100,
    "de": Decimal("-1.50"),
    "f": 1.5,
    "d": float("inf"),
    "u": _U,
    "tu": _TU,
    "ts": _TS,
    "ts_far": _FAR,
    "da": _DAY,
    "da_old": _OLD_DAY,
    "tm": 3_723_000_000_004,
    "du": Duration(1, 2, 3),
    "ip": ipaddress.IPv4Address("10.1.2.3"),
    "ip6": ipaddress.IPv6Address("2001:db8::1"),
    "l": [3, 1, 2],
    "s": ["b", "a"],
    "m": [("x", 1), ("y", 2)],
    "mf": [(1.5, "one and a half")],
    "ml": [[(1, "a")], []],
    "tp": (7, None, [1, 2]),
    "ud": {"street": "Main", "Zip code": 12345, "we`ird": ["p"]},
    "udn": {"street": "Side", "Zip code": None, "we`ird": None},
    "od": {"1st": 1},
    "v": [1.0, 2.0, 3.0],
    "lt": [("a", 1), ("b", None)],
}


def _plain_value(v: Any) -> Any:
    """Server and chdb results side by side: DateTime64 without time zone, dicts/tuples kept."""
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None)
    return v


def test_every_cql_type_maps_and_reads_back(ch: ClickHouseDestination) -> None:
    changes = list(
        changes_of_update(UpdateBuilder(TYPES, {"k": "key"}, now=NOW).insert({"c": _TS}, _VALUES, 10).build())
    )
    ch.apply(TYPES, changes)
    assert canonical(TYPES, ch.read_state(TYPES, NOW)) == canonical(
        TYPES, _model(TYPES, changes).visible(NOW)
    )
    caps = ch.capabilities
    layout = ch.layout(TYPES)
    names = ["k", "c", *_VALUES, "nl"]
    row = _rows(
        ch, f"SELECT {', '.join(quote_identifier(n) for n in names)} FROM {layout.ident(layout.main)} FINAL"
    )
    got = dict(zip(names, (_plain_value(v) for v in row[0]), strict=True))

    ms = dt.datetime(2023, 11, 14, 22, 13, 20, 123000)
    json_map = b'{"x": 1, "y": 2}'
    want: dict[str, Any] = {
        "k": b"key",
        "c": ms if caps.datetime64 else _TS,
        "a": b"ascii",
        "t": "tëxt ✓".encode(),
        "b": b"\x00\xff'\\",
        "bo": True if caps.bool_type else 1,
        "ti": -8,
        "si": -16,
        "i": -32,
        "bi": -(2**63),
        "vi": str(2**100).encode(),
        "de": b"-1.50",
        "f": 1.5,
        "d": float("inf"),
        "u": _U,
        "tu": _TU,
        "ts": ms if caps.datetime64 else _TS,
        "ts_far": None if caps.datetime64 else _FAR,  # not representable: NULL, exact in the state
        "da": dt.date(2024, 2, 29),
        "da_old": dt.date(1960, 1, 1) if caps.date32 else None,
        "tm": 3_723_000_000_004,
        "du": b'{"months": 1, "days": 2, "nanoseconds": 3}',
        "ip": b"10.1.2.3",
        "ip6": b"2001:db8:0:0:0:0:0:1",
        "l": [3, 1, 2],
        "s": [b"a", b"b"],
        "m": {b"x": 1, b"y": 2} if caps.map else json_map,
        "mf": b'{"1.5": "one and a half"}',  # float keys: no Map key type everywhere
        "ml": [{1: b"a"}, {}] if caps.map else b'[{"1": "a"}, {}]',
        "tp": (7, None, [1, 2]),
        "ud": (b"Main", 12345, [b"p"])
        if caps.named_tuple
        else b'{"street": "Main", "\\"Zip code\\"": 12345, "we`ird": ["p"]}',
        "udn": (b"Side", None, [])
        if caps.named_tuple
        else b'{"street": "Side", "\\"Zip code\\"": null, "we`ird": null}',
        "od": b'{"1st": 1}',  # a field name ClickHouse refuses in a tuple: JSON
        "v": [1.0, 2.0, 3.0],
        # 18.16 would flatten Array(Tuple) into Nested sub-columns: JSON there.
        "lt": [(b"a", 1), (b"b", None)] if caps.tuple_arrays else b'[["a", 1], ["b", null]]',
        "nl": None,
    }
    assert got == want
    types = {
        n.decode(): normal_type(ty.decode())
        for n, ty in _rows(
            ch,
            f"SELECT name, type FROM system.columns WHERE database = {literal(layout.database)} "
            f"AND table = {literal(layout.main)}",
        )
    }
    assert types["ts"] == normal_type(
        "Nullable(DateTime64(3, 'UTC'))" if caps.datetime64 else "Nullable(Int64)"
    )
    assert types["bo"] == normal_type("Nullable(Bool)" if caps.bool_type else "Nullable(UInt8)")
    assert types["l"] == normal_type("Array(Nullable(Int32))")
    assert types["_cdc_version"] == normal_type("UInt64")


def test_oldest_types_work_on_every_server(make_ch: Any) -> None:
    """The 18.16 choices (Int64 milliseconds, Date, UInt8, JSON maps and UDTs) on any server."""
    dest: ClickHouseDestination = make_ch(capabilities=OLDEST)
    changes = list(
        changes_of_update(UpdateBuilder(TYPES, {"k": "key"}, now=NOW).insert({"c": _TS}, _VALUES, 10).build())
    )
    dest.apply(TYPES, changes)
    assert canonical(TYPES, dest.read_state(TYPES, NOW)) == canonical(
        TYPES, _model(TYPES, changes).visible(NOW)
    )
    layout = dest.layout(TYPES)
    row = _rows(dest, f"SELECT ts, bo, da_old, m, ud FROM {layout.ident(layout.main)}")
    assert row == [
        (_TS, 1, None, b'{"x": 1, "y": 2}', b'{"street": "Main", "\\"Zip code\\"": 12345, "we`ird": ["p"]}')
    ]


# --------------------------------------------------------------------------------------------
# Names and values an attacker would choose

NASTY = [
    "Mixed Case",
    "select",
    'a"quote',
    "back`tick",
    "back\\slash",
    "x'); DROP DATABASE default; --",
    "_cdc_key",
    "_cdc_v:v",
    "_cdc_version",
    "a.b",
    "ünï©ødé 名前",
    "new\nline",
    "long" + "ñ" * 80,
]


def _cql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


ADVERSARIAL_SCHEMA = parse_schema(
    "CREATE KEYSPACE \"Ks\" WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};\n"
    'CREATE TABLE "Ks"."Weird_Table" ("_cdc_pk" text, "c`k" text, "st`atic" text static, '
    + ", ".join(f"{_cql_name(n)} text" for n in NASTY)
    + ', PRIMARY KEY ("_cdc_pk", "c`k")) WITH ID = 00000000-0000-1000-8000-000000000202;'
)
ADVERSARIAL = ADVERSARIAL_SCHEMA.table("Ks.Weird_Table")
NASTY_VALUES = [
    "'; DROP TABLE t; --",
    "\\'",
    "`",
    '"',
    "\x00nul\x01",
    "ünïcode 🎉",
    "\\x00",
    "",
]


def test_adversarial_identifiers_and_values(ch: ClickHouseDestination) -> None:
    changes: list[RowChange] = []
    for i, pk in enumerate(NASTY_VALUES):
        b = UpdateBuilder(ADVERSARIAL, {"_cdc_pk": pk}, now=NOW)
        values = {n: NASTY_VALUES[(i + j) % len(NASTY_VALUES)] for j, n in enumerate(NASTY)}
        b.insert({"c`k": pk + "'"}, values, 10 + i)
        b.update(None, {"st`atic": pk[::-1]}, 10 + i)
        if i % 3 == 0:
            b.delete_row({"c`k": pk + "'"}, 9 + i)  # older: shadows nothing
        changes.extend(changes_of_update(b.build()))
    changes.extend(
        changes_of_update(
            UpdateBuilder(ADVERSARIAL, {"_cdc_pk": NASTY_VALUES[0]}, now=NOW).delete_partition(100).build()
        )
    )
    for batch in _batches(changes, random.Random(7)):
        ch.apply(ADVERSARIAL, batch, batch="nasty")
    want = canonical(ADVERSARIAL, _model(ADVERSARIAL, changes).visible(NOW))
    assert canonical(ADVERSARIAL, ch.read_state(ADVERSARIAL, NOW)) == want

    layout = ch.layout(ADVERSARIAL)
    assert layout.database == "t" + layout.database[1:] and layout.database.endswith("Ks")
    columns = {
        n.decode()
        for (n,) in _rows(
            ch,
            f"SELECT name FROM system.columns WHERE database = {literal(layout.database)} AND table = {literal(layout.main)}",
        )
    }
    assert {"_cdc_col__cdc_key", "_cdc_col__cdc_v:v", "_cdc_col__cdc_version", "_cdc_col__cdc_pk"} <= columns
    assert naming.value_column(NASTY[-1]) in columns  # shortened with a hash
    shown = _current(
        ch,
        ADVERSARIAL,
        ", ".join(
            quote_identifier(naming.value_column(n)) for n in ["_cdc_pk", "st`atic", "select", "back`tick"]
        ),
        quote_identifier("_cdc_col__cdc_pk"),
    )
    expected = sorted(
        (
            pk.encode(),
            pk[::-1].encode(),
            NASTY_VALUES[(i + 1) % len(NASTY_VALUES)].encode(),
            NASTY_VALUES[(i + 3) % len(NASTY_VALUES)].encode(),
        )
        for i, pk in enumerate(NASTY_VALUES)
        if i != 0  # partition 0 was deleted
    )
    assert shown == expected
    # Nothing was executed from a value: the server still has its default database.
    assert _rows(ch, "SELECT count() FROM system.databases WHERE name = 'default'") == [(1,)]


def test_identifier_and_literal_escaping() -> None:
    assert quote_identifier("a`b\\c\nd") == "`a\\`b\\\\c\\nd`"
    assert literal(b"a'\\\x00\xff") == "'a\\x27\\x5C\\x00\\xFF'"
    assert literal("é") == "'\\xC3\\xA9'"
    assert literal(-5) == "-5"
    assert qualified("d`b", "t") == "`d\\`b`.`t`"
    with pytest.raises(TypeError):
        literal(1.5)  # type: ignore[arg-type]
    assert normal_type("Tuple(`a b` Nullable(Int32), cd String)") == normal_type(
        "Tuple(`a b` Nullable(Int32),`cd`  String)"
    )


# --------------------------------------------------------------------------------------------
# Schema evolution

EVOLVED = parse_schema(
    """
    CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
    CREATE TABLE ks.evo (k int, c int, v text, gone int, PRIMARY KEY (k, c))
        WITH ID = 00000000-0000-1000-8000-000000000203;
    """
).table("ks.evo")
EVOLVED_2 = parse_schema(
    """
    CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
    CREATE TABLE ks.evo (k int, c int, v text, added map<text, int>, "New Col" timestamp, st text static,
        PRIMARY KEY (k, c)) WITH ID = 00000000-0000-1000-8000-000000000203;
    """
).table("ks.evo")


def test_schema_evolution_adds_columns_keeps_dropped_ones_and_records_history(
    ch: ClickHouseDestination,
) -> None:
    first = ch.ensure_table(EVOLVED)
    assert any(c.endswith(".evo") and c.startswith("created table") for c in first)
    assert ch.ensure_table(EVOLVED) == []  # idempotent
    before = list(
        changes_of_update(
            UpdateBuilder(EVOLVED, {"k": 1}, now=NOW)
            .insert({"c": 1}, {"v": "a", "gone": 5}, 10)
            .insert({"c": 2}, {"v": "b", "gone": 6}, 10)
            .build()
        )
    )
    ch.apply(EVOLVED, before)

    changed = ch.ensure_table(EVOLVED_2)
    layout = ch.layout(EVOLVED_2)
    assert any(c.startswith("added column added") for c in changed)
    assert any(c.startswith("added column New Col") for c in changed)
    assert any(c.startswith("created table") and c.endswith("evo$static") for c in changed)
    assert any(c.startswith("recreated view") for c in changed)
    assert [c for c in changed if "no longer" in c] == [
        f"column gone is no longer in ks.evo: kept in {ch.layout(EVOLVED_2).database}.evo (rows written "
        "since hold NULL or the type's default there), no longer filled"
    ]
    assert ch.ensure_table(EVOLVED_2) == []  # recorded once
    columns = {
        n.decode()
        for (n,) in _rows(
            ch,
            f"SELECT name FROM system.columns WHERE database = {literal(layout.database)} AND table = {literal(layout.main)}",
        )
    }
    assert {"gone", "_cdc_v:gone", "added", "_cdc_c:added", "New Col"} <= columns
    history = ch.schema_history(EVOLVED_2)
    assert history[: len(first)] == first and history[len(first) :] == changed

    after = list(
        changes_of_update(
            UpdateBuilder(EVOLVED_2, {"k": 1}, now=NOW)
            .update({"c": 1}, {"added": [("x", 1)], "New Col": _TS}, 20)
            .update(None, {"st": "static"}, 20)
            .build()
        )
    )
    ch.apply(EVOLVED_2, after)
    model = _model(EVOLVED_2, before + after)
    assert canonical(EVOLVED_2, ch.read_state(EVOLVED_2, NOW)) == canonical(EVOLVED_2, model.visible(NOW))
    shown = _current(ch, EVOLVED_2, "k, c, v, st", "k, c")
    assert shown == [(1, 1, b"a", b"static"), (1, 2, b"b", b"static")]
    # The dropped column stays, with its values in rows not written since (as in PostgreSQL).
    assert _rows(ch, f"SELECT c, gone FROM {layout.ident(layout.main)} FINAL ORDER BY c") == [
        (1, None),
        (2, 6),
    ]


def test_an_incompatible_existing_column_is_reported(ch: ClickHouseDestination) -> None:
    ch.ensure_table(EVOLVED)
    layout = ch.layout(EVOLVED)
    retyped = parse_schema(
        """
        CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
        CREATE TABLE ks.evo (k int, c int, v int, PRIMARY KEY (k, c)) WITH ID = 00000000-0000-1000-8000-000000000203;
        """
    ).table("ks.evo")
    with pytest.raises(DestinationError, match="column v of evo is Nullable\\(String\\)") as info:
        ch.ensure_table(retyped)
    assert "destination clickhouse" in str(info.value) and "table ks.evo" in str(info.value)
    assert layout.database in {d.decode() for (d,) in _rows(ch, "SELECT name FROM system.databases")}


# --------------------------------------------------------------------------------------------
# Failures


def _k(k: int, now: int = NOW - 100) -> UpdateBuilder:
    return UpdateBuilder(TABLE, {"k": k}, now=now)


BASE = [
    *changes_of_update(
        _k(1)
        .insert({"c1": 1, "c2": "a"}, {"v": "old", "n": 1, "tags": ["a"]}, 10)
        .insert({"c1": 2, "c2": "b"}, {"v": "kept"}, 30)
        .update(None, {"s": "s-old"}, 10)
        .build()
    ),
    *changes_of_update(
        _k(2)
        .insert({"c1": 1, "c2": "a"}, {"v": "ranged"}, 10)
        .insert({"c1": 2, "c2": "a"}, {"v": "other"}, 10)
        .build()
    ),
]
# Deletes partition 1 up to ts 20 (row (1, a) goes, row (2, b) at ts 30 stays), writes a new row,
# a static value and a range deletion elsewhere.
BATCH = [
    *changes_of_update(
        _k(1)
        .delete_partition(20)
        .insert({"c1": 3, "c2": "a"}, {"v": "new", "attrs": [("p", 1)]}, 25)
        .update(None, {"s": "s-new"}, 25)
        .build()
    ),
    *changes_of_update(_k(2).delete_range({"c1": 0}, {"c1": 1}, 15).build()),
]


@pytest.mark.parametrize("fail_at", [0, 1, 2])
def test_rerunning_a_batch_after_a_partial_failure_converges(
    ch: ClickHouseDestination, make_ch: Any, fail_at: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails before the rows, after the rows, after the static rows (partition records not written)."""
    ch.apply(TABLE, BASE)
    client = ch.client()
    original = type(client).insert
    calls = {"n": 0}

    def failing_insert(self: ClickHouseClient, table: str, columns: Any, data: Any) -> None:
        if calls["n"] == fail_at:
            raise RuntimeError("server went away mid-batch")
        calls["n"] += 1
        original(self, table, columns, data)

    monkeypatch.setattr(type(client), "insert", failing_insert)
    with pytest.raises(DestinationError, match="server went away") as info:
        ch.apply(TABLE, BATCH, batch="segment-7:512")
    assert "destination clickhouse" in str(info.value) and "table ks.t" in str(info.value)
    assert "batch segment-7:512" in str(info.value)
    monkeypatch.undo()

    ch.apply(TABLE, BATCH, batch="segment-7:512")  # the rerun
    model = _model(TABLE, BASE + BATCH)
    assert canonical(TABLE, ch.read_state(TABLE, NOW)) == canonical(TABLE, model.visible(NOW))
    clean = make_ch()
    clean.apply(TABLE, BASE + BATCH)
    columns, order = "k, c1, c2, s, v, n, tags, attrs, items", "k, c1, c2"
    assert _current(ch, TABLE, columns, order) == _current(clean, TABLE, columns, order)
    assert [r[:5] for r in _current(ch, TABLE, columns, order)] == [
        (1, 2, b"b", b"s-new", b"kept"),
        (1, 3, b"a", b"s-new", b"new"),
        (2, 2, b"a", None, b"other"),
    ]


def test_connection_loss_is_retried(
    ch: ClickHouseDestination, clickhouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if clickhouse_url.startswith("chdb:"):
        pytest.skip("chdb runs in-process: there is no connection to lose")
    from clickhouse_driver import errors

    ch.ensure_table(TABLE)
    original = NativeClient.insert
    failures = {"left": 2}

    def flaky(self: NativeClient, table: str, columns: Any, data: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            self.reset()
            raise errors.NetworkError("Connection reset by peer")
        original(self, table, columns, data)

    monkeypatch.setattr(NativeClient, "insert", flaky)
    ch.retry.initial_delay = 0.01
    result = ch.apply(
        TABLE, list(changes_of_update(_k(1).insert({"c1": 1, "c2": "a"}, {"v": "x"}, 10).build()))
    )
    assert result.retries == 2
    assert canonical(TABLE, ch.read_state(TABLE, NOW)) == canonical(
        TABLE,
        _model(
            TABLE, list(changes_of_update(_k(1).insert({"c1": 1, "c2": "a"}, {"v": "x"}, 10).build()))
        ).visible(NOW),
    )


def test_unreachable_server_is_reported_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "hunter2-secret")
    dest = ClickHouseDestination("clickhouse://alice@127.0.0.1:1/db", connect_timeout=0.5)
    dest.retry.attempts, dest.retry.initial_delay = 2, 0.01
    with pytest.raises(DestinationError, match="capability detection failed") as info:
        dest.ensure_table(TABLE)
    assert "hunter2" not in str(info.value) and "destination clickhouse" in str(info.value)
    assert "hunter2" not in repr(dest) and "alice@127.0.0.1:1/db" in repr(dest)


# --------------------------------------------------------------------------------------------
# Credentials


def test_the_url_never_carries_the_password() -> None:
    with pytest.raises(ClickHouseURLError, match=PASSWORD_ENV) as info:
        ConnectionSpec.parse("clickhouse://alice:hunter2@db:9000/x")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ClickHouseURLError, match="unknown ClickHouse URL scheme"):
        ConnectionSpec.parse("http://db:8123")
    spec = ConnectionSpec.parse("clickhouse://bob@db.example:9440/analytics")
    assert (spec.kind, spec.host, spec.port, spec.user, spec.database) == (
        "server",
        "db.example",
        9440,
        "bob",
        "analytics",
    )
    assert ConnectionSpec.parse("chdb:///var/lib/cdc/chdb") == ConnectionSpec(
        "chdb", path="/var/lib/cdc/chdb"
    )


def test_password_comes_from_the_environment_or_a_secrets_file(
    clickhouse_server_url: str, clickhouse_started_here: bool, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not clickhouse_started_here:
        pytest.skip("needs the server started by the tests (it has a user with a known password)")
    user, password = CLICKHOUSE_TEST_USER
    spec = ConnectionSpec.parse(clickhouse_server_url)
    url = f"clickhouse://{user}@{spec.host}:{spec.port}/default"
    monkeypatch.delenv(PASSWORD_ENV, raising=False)

    secret = tmp_path / "password"
    secret.write_text(password + "\n", encoding="utf-8")
    from_file = ClickHouseDestination(url, password_file=str(secret))
    assert from_file.client().query("SELECT 1") == [(1,)]  # connected as the user
    assert password not in repr(from_file) and password not in repr(from_file.client())
    from_file.close()

    monkeypatch.setenv(PASSWORD_ENV, password)  # the environment wins over the file
    from_env = ClickHouseDestination(url, password_file=str(tmp_path / "missing"))
    assert from_env.client().query("SELECT 1") == [(1,)]
    from_env.close()

    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    wrong = ClickHouseDestination(url)
    wrong.retry.attempts = 1
    with pytest.raises(DestinationError) as info:
        wrong.ensure_table(TABLE)
    wrong.close()
    assert password not in str(info.value) and "wrong" not in str(info.value).replace("wrong password", "")


# --------------------------------------------------------------------------------------------
# The $current view, refresh and purge


@pytest.mark.parametrize("forced", [{}, OLDEST], ids=["detected", "oldest"])
def test_current_view(make_ch: Any, forced: dict[str, bool]) -> None:
    """The view applies TTL with the server clock, joins static columns, shows static-only partitions."""
    dest: ClickHouseDestination = make_ch(capabilities=forced)
    ck = {"c1": 1, "c2": "a"}
    wall = int(time.time())
    changes = [
        *changes_of_update(
            _k(1).insert(ck, {"v": "x", "n": 3, "tags": ["q", "p"]}, 10).update(None, {"s": "st"}, 10).build()
        ),
        *changes_of_update(_k(2).update(None, {"s": "only static"}, 10).build()),
        *changes_of_update(
            _k(3, wall - 100).insert(ck, {"v": "gone"}, 10, ttl=50).build()
        ),  # expired 50 s ago
        *changes_of_update(_k(4, wall).insert(ck, {"v": "lives"}, 10, ttl=3600).build()),
        *changes_of_update(_k(5, wall - 100).update(None, {"s": "static gone"}, 10, ttl=50).build()),
        *changes_of_update(_k(6).insert(ck, {"v": "deleted"}, 10).delete_partition(11).build()),
    ]
    dest.apply(TABLE, changes)
    rows = _current(dest, TABLE, "k, c1, c2, s, v, n, tags", "k")
    assert rows == [
        (1, 1, b"a", b"st", b"x", 3, [b"p", b"q"]),
        (2, None, None, b"only static", None, None, []),
        (4, 1, b"a", None, b"lives", None, []),
    ]


@pytest.mark.parametrize("forced", [{}, OLDEST], ids=["detected", "oldest"])
def test_refresh_rematerialises_expired_values(make_ch: Any, forced: dict[str, bool]) -> None:
    ch: ClickHouseDestination = make_ch(capabilities=forced)
    ck = {"c1": 1, "c2": "a"}
    changes = [
        *changes_of_update(_k(1, NOW).insert(ck, {"n": 1}, 10).build()),
        *changes_of_update(_k(1, NOW).update(ck, {"v": "short"}, 11, ttl=60).build()),
    ]
    ch.apply(TABLE, changes)
    layout = ch.layout(TABLE)
    main = layout.ident(layout.main)
    assert _rows(ch, f"SELECT v, `_cdc_refresh_at` FROM {main} FINAL") == [(b"short", NOW + 60)]
    assert ch.refresh(TABLE, NOW + 30) == 0
    assert ch.refresh(TABLE, NOW + 61) == 1
    assert _rows(ch, f"SELECT v, n, `_cdc_refresh_at`, `_cdc_version` FROM {main} FINAL") == [
        (None, 1, None, 2)
    ]
    assert ch.refresh(TABLE, NOW + 61) == 0
    assert canonical(TABLE, ch.read_state(TABLE, NOW + 61)) == canonical(
        TABLE, _model(TABLE, changes).visible(NOW + 61)
    )


@pytest.mark.parametrize("forced", [{}, OLDEST], ids=["detected", "oldest"])
def test_purge_removes_every_version_of_dead_rows(make_ch: Any, forced: dict[str, bool]) -> None:
    ch: ClickHouseDestination = make_ch(capabilities=forced)
    ck = {"c1": 1, "c2": "a"}
    changes = [
        *changes_of_update(_k(1).insert(ck, {"v": "x"}, 10).build()),
        *changes_of_update(_k(1).update(ck, {"n": 2}, 11).build()),  # a second version
        *changes_of_update(_k(1).delete_row(ck, 12).build()),  # a third, dead
        *changes_of_update(_k(2).insert(ck, {"v": "alive"}, 10).build()),
    ]
    for change in changes:
        ch.apply(TABLE, [change])
    layout = ch.layout(TABLE)
    main = layout.ident(layout.main)
    assert _rows(ch, f"SELECT count() FROM {main} WHERE k = 1") == [(3,)]
    wall = int(time.time())
    assert ch.purge(TABLE, wall - 3600, grace_seconds=0) == 0  # loaded after the cutoff
    assert ch.purge(TABLE, wall + 5, grace_seconds=0) == 1
    assert _rows(ch, f"SELECT count() FROM {main} WHERE k = 1") == [(0,)]
    assert _rows(ch, f"SELECT k, v FROM {main} FINAL") == [(2, b"alive")]
    assert canonical(TABLE, ch.read_state(TABLE, NOW)) == canonical(
        TABLE, _model(TABLE, changes).visible(NOW)
    )


def test_fingerprint_matches_the_model(ch: ClickHouseDestination) -> None:
    changes = list(
        changes_of_update(_k(1).insert({"c1": 1, "c2": "a"}, {"v": "x", "tags": ["t"]}, 10).build())
    )
    ch.apply(TABLE, changes)
    from cdc_platform.destinations.state import fingerprint

    rows, digest = fingerprint(TABLE, _model(TABLE, changes).visible(NOW))
    fp = ch.fingerprint(TABLE, NOW)
    assert (fp.rows, fp.digest) == (rows, digest) and rows == 1


def test_chdb_state_persists_in_its_directory(tmp_path: Any) -> None:
    url = f"chdb://{tmp_path / 'replica'}"
    changes = list(changes_of_update(_k(1).insert({"c1": 1, "c2": "a"}, {"v": "kept"}, 10).build()))
    first = ClickHouseDestination(url)
    first.apply(TABLE, changes)
    first.close()  # the last user of the directory: the session closes
    again = ClickHouseDestination(url)
    try:
        assert canonical(TABLE, again.read_state(TABLE, NOW)) == canonical(
            TABLE, _model(TABLE, changes).visible(NOW)
        )
    finally:
        again.close()
