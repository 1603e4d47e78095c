"""PostgreSQL destination: type mapping, hostile names and values, schema evolution, TTL upkeep."""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import uuid

import psycopg
from psycopg import sql

from cdc_platform.changes.merge import TableModel, canonical
from cdc_platform.changes.records import changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.destinations import naming
from cdc_platform.destinations.postgres.sink import PostgresDestination
from cdc_platform.schema.cql import parse_schema
from cdc_platform.schema.values import Duration
from cdc_platform_tests.workloads import PLAIN

NOW = 1_800_000_000


TYPES = parse_schema(
    """
    CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
    CREATE TYPE ks.pt (x double, "Label" text);
    CREATE TABLE ks.types (
        id int PRIMARY KEY,
        a ascii, b blob, bo boolean, ti tinyint, si smallint, i int, bi bigint, vi varint,
        f float, d double, de decimal, u uuid, tu timeuuid, ts timestamp, da date, tm time,
        du duration, ip inet, fl frozen<list<int>>, fs frozen<set<text>>, fm frozen<map<text, int>>,
        tp frozen<tuple<int, text>>, fu frozen<pt>, ve vector<float, 2>,
        l list<uuid>, s set<inet>, m map<int, text>, un pt
    ) WITH ID = 00000000-0000-1000-8000-000000000201;
    """
)


def test_every_type_in_typed_columns(pg: PostgresDestination, postgres_url: str) -> None:
    table = TYPES.table("ks.types")
    u = uuid.UUID("6bddc89a-5644-11e4-97fc-56847afe9799")
    values = {
        "a": "ascii",
        "b": b"\x00\xff",
        "bo": True,
        "ti": -128,
        "si": 32767,
        "i": -(2**31),
        "bi": 2**63 - 1,
        "vi": 10**30,
        "f": 1.5,
        "d": -2.25,
        "de": decimal.Decimal("-1.230"),
        "u": u,
        "tu": u,
        "ts": 1_700_000_000_123,
        "da": 19_000,
        "tm": 3_723_004_005_006,
        "du": Duration(14, 3, 5),
        "ip": ipaddress.ip_address("::ffff:1.2.3.4"),
        "fl": [3, 1],
        "fs": ["b", "a"],
        "fm": [("k", 1)],
        "tp": (1, None),
        "fu": {"x": 0.5, "Label": "p"},
        "ve": [1.0, -2.0],
        "l": [u, u],
        "s": [ipaddress.ip_address("10.0.0.1")],
        "m": [(2, "two"), (1, "one")],
        "un": {"x": 1.0, "Label": None},
    }
    pg.apply(
        table,
        list(changes_of_update(UpdateBuilder(table, {"id": 1}, now=NOW).insert({}, values, 10).build())),
    )
    schema = pg.layout(table).schema
    with psycopg.connect(postgres_url) as conn:
        cols = ", ".join(f'"{naming.value_column(c)}"' for c in values)
        row = conn.execute(f'SELECT {cols} FROM "{schema}"."types"').fetchone()
    assert row is not None
    got = dict(zip(values, row, strict=True))
    assert got["a"] == "ascii" and got["b"] == b"\x00\xff" and got["bo"] is True
    assert (got["ti"], got["si"], got["i"], got["bi"]) == (-128, 32767, -(2**31), 2**63 - 1)
    assert got["vi"] == decimal.Decimal(10**30)
    assert got["de"] == decimal.Decimal("-1.230") and str(got["de"]) == "-1.230"  # scale kept
    assert got["u"] == u and got["tu"] == u
    assert got["ts"] == dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=dt.UTC)
    assert got["da"] == dt.date(2022, 1, 8)
    assert got["tm"] == 3_723_004_005_006  # nanoseconds kept
    assert got["du"] == {"months": 14, "days": 3, "nanoseconds": 5}
    assert got["ip"] == ipaddress.ip_address("::ffff:1.2.3.4")
    assert got["fl"] == [3, 1] and got["fs"] == ["a", "b"]  # set elements in Cassandra order
    assert got["fm"] == {"k": 1}
    assert got["tp"] == [1, None]
    assert got["fu"] == {"x": 0.5, '"Label"': "p"}  # Cassandra's toJson names case-sensitive fields so
    assert got["ve"] == [1.0, -2.0]
    assert got["l"] == [u, u] and got["s"] == [ipaddress.ip_address("10.0.0.1")]
    assert got["m"] == {"1": "one", "2": "two"}
    assert got["un"] == {"x": 1.0, '"Label"': None}


def test_values_out_of_postgres_range_stay_exact_in_state(pg: PostgresDestination, postgres_url: str) -> None:
    table = TYPES.table("ks.types")
    values = {"ts": 10**15, "da": -(2**31), "a": "nul\x00byte" and "ok"}
    changes = list(changes_of_update(UpdateBuilder(table, {"id": 2}, now=NOW).insert({}, values, 10).build()))
    pg.apply(table, changes)
    with psycopg.connect(postgres_url) as conn:
        ts, da = conn.execute(f'SELECT ts, da FROM "{pg.layout(table).schema}"."types"').fetchone()  # type: ignore[misc]
    assert ts is None and da is None  # PostgreSQL cannot hold them...
    model = TableModel(table)
    model.apply_all(changes)
    assert canonical(table, pg.read_state(table, NOW)) == canonical(
        table, model.visible(NOW)
    )  # ...but state can


HOSTILE_NAMES = [
    'Robert"); DROP TABLE students;--',
    "select",
    "MixedCase",
    "名前",
    "back`tick",
    "_cdc_key",
    "_cdc_v:x",
    "x" * 60,
    "x" * 60 + "y",
]


def test_hostile_identifiers_and_values(pg: PostgresDestination, postgres_url: str) -> None:
    cols = ",\n".join(f'"{n.replace(chr(34), chr(34) * 2)}" text' for n in HOSTILE_NAMES)
    schema = parse_schema(
        f"""
        CREATE KEYSPACE "Weird_KS" WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': '1'}};
        CREATE TABLE "Weird_KS"."Table" (
            "Key'; --" text PRIMARY KEY,
            {cols}
        ) WITH ID = 00000000-0000-1000-8000-000000000202;
        """
    )
    table = schema.table("Weird_KS.Table")
    evil = "'); DELETE FROM cdc_meta.schema_history; --"
    values = {n: f"{evil}{i}" for i, n in enumerate(HOSTILE_NAMES)}
    changes = list(
        changes_of_update(UpdateBuilder(table, {"Key'; --": evil}, now=NOW).insert({}, values, 10).build())
    )
    pg.apply(table, changes)
    model = TableModel(table)
    model.apply_all(changes)
    assert canonical(table, pg.read_state(table, NOW)) == canonical(table, model.visible(NOW))
    with psycopg.connect(postgres_url) as conn:
        n = conn.execute("SELECT count(*) FROM cdc_meta.schema_history").fetchone()
        got = conn.execute(
            sql.SQL("SELECT {} FROM {}").format(
                sql.Identifier(naming.value_column(HOSTILE_NAMES[0])),
                sql.Identifier(pg.layout(table).schema, "Table"),
            )
        ).fetchone()
    assert n is not None and n[0] > 0
    assert got == (f"{evil}0",)


def test_schema_evolution_adds_columns_and_keeps_dropped_ones(
    pg: PostgresDestination, postgres_url: str
) -> None:
    v1 = parse_schema(
        "CREATE TABLE ks.evo (id int PRIMARY KEY, a text, old int) WITH ID = 00000000-0000-1000-8000-000000000203;"
    ).table("ks.evo")
    first = pg.ensure_table(v1)
    assert any("created table" in c for c in first)
    pg.apply(
        v1, list(changes_of_update(UpdateBuilder(v1, {"id": 1}).insert({}, {"a": "x", "old": 7}, 10).build()))
    )
    v2 = parse_schema(
        """
        CREATE TABLE ks.evo (id int PRIMARY KEY, a text, old int, b list<int>)
            WITH ID = 00000000-0000-1000-8000-000000000203;
        ALTER TABLE ks.evo DROP old USING TIMESTAMP 20;
        """
    ).table("ks.evo")
    changes = pg.ensure_table(v2)
    assert any("added column b integer[]" in c for c in changes)
    pg.apply(
        v2, list(changes_of_update(UpdateBuilder(v2, {"id": 2}).insert({}, {"a": "y", "b": [1]}, 30).build()))
    )
    schema = pg.layout(v2).schema
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(f'SELECT id, a, old, b FROM "{schema}"."evo" ORDER BY id').fetchall()
        history = [
            r[0]
            for r in conn.execute(
                'SELECT change FROM cdc_meta.schema_history WHERE keyspace = %s AND "table" = %s ORDER BY id',
                ("ks", "evo"),
            )
        ]
        shown = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = 'evo$current' ORDER BY ordinal_position",
                (schema,),
            )
        ]
    # The dropped column stays (nullable) with its old values and is no longer filled; the
    # view, which shows what Cassandra returns, no longer has it. Both recorded, once.
    assert rows == [(1, "x", 7, None), (2, "y", None, [1])]
    assert shown == ["id", "a", "b"]
    assert any("added column b" in h for h in history) and any("created table" in h for h in history)
    assert [h for h in history if "no longer" in h] == [
        f"column old is no longer in ks.evo: kept in {schema}.evo with the values it had, no longer filled"
    ]
    assert f"created view {schema}.evo$current" in history[: len(first)]
    assert changes[-1] == f"recreated view {schema}.evo$current"
    assert pg.ensure_table(v2) == []  # idempotent


def test_refresh_and_purge(pg: PostgresDestination, postgres_url: str) -> None:
    table = TYPES.table("ks.types")
    b = UpdateBuilder(table, {"id": 5}, now=NOW)
    pg.apply(
        table,
        list(changes_of_update(b.insert({}, {"a": "keep"}, 10).update({}, {"i": 1}, 11, ttl=100).build())),
    )
    pg.apply(
        table, list(changes_of_update(UpdateBuilder(table, {"id": 6}, now=NOW).delete_partition(12).build()))
    )
    schema = pg.layout(table).schema
    assert pg.refresh(table, NOW + 50) == 0
    assert pg.refresh(table, NOW + 100) == 1  # the TTL of i passed
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(
            f'SELECT a, i, _cdc_refresh_at FROM "{schema}"."types" WHERE id = 5'
        ).fetchone() == ("keep", None, None)
    # Purge drops rows that no longer exist once the grace period passed; live rows stay.
    with psycopg.connect(postgres_url) as conn:
        conn.execute(
            f'INSERT INTO "{schema}"."types" (_cdc_key, _cdc_pk, _cdc_exists, _cdc_loaded_at) VALUES (%s, %s, false, now() - interval \'30 days\')',
            (b"\x00dead", b"\x00dead"),
        )
    now = int(dt.datetime.now(dt.UTC).timestamp())
    assert pg.purge(table, now, grace_seconds=86_400) == 1
    assert pg.purge(table, now, grace_seconds=86_400) == 0


def test_tables_of_an_earlier_layout_are_upgraded_in_place(postgres_url: str, schema_prefix: str) -> None:
    """A table written before rows had a short form (no ``_cdc_ts``) and with the old index on
    ``_cdc_pk`` gets the column, loses the index, and its rows keep reading and merging."""
    old = PostgresDestination(postgres_url, schema_prefix=schema_prefix)
    old.ensure_table(PLAIN)
    lay = old.layout(PLAIN)
    # Rows in full form, as the general path writes them (a TTL keeps the row off the fresh path).
    ttl = UpdateBuilder(PLAIN, {"id": 1}, now=NOW).insert({}, {"name": "a", "at": 5}, 10, ttl=10**6)
    old.apply(PLAIN, list(changes_of_update(ttl.build())))
    old.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{lay.schema}"."{lay.main}" DROP COLUMN _cdc_ts CASCADE')
        conn.execute(f'CREATE INDEX "{lay.main}$pk" ON "{lay.schema}"."{lay.main}" (_cdc_pk)')
    new = PostgresDestination(postgres_url, schema_prefix=schema_prefix)
    try:
        assert any("added column _cdc_ts bigint" in c for c in new.ensure_table(PLAIN))
        new.apply(
            PLAIN,
            list(changes_of_update(UpdateBuilder(PLAIN, {"id": 1}).update({}, {"name": "b"}, 20).build())),
        )
        new.apply(
            PLAIN,
            list(changes_of_update(UpdateBuilder(PLAIN, {"id": 2}).insert({}, {"name": "c"}, 20).build())),
        )
        state = new.read_state(PLAIN, NOW)
        assert sorted(
            (pk[0], row["name"], row.get("at")) for (pk, _), row in canonical(PLAIN, state).items()
        ) == [
            ((1).to_bytes(4, "big"), b"b", (5).to_bytes(8, "big")),
            ((2).to_bytes(4, "big"), b"c", None),
        ]
        with psycopg.connect(postgres_url) as conn:
            indexes = {
                r[0]
                for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (lay.schema,))
            }
            short = conn.execute(f'SELECT _cdc_ts FROM "{lay.schema}"."{lay.main}" ORDER BY id').fetchall()
        assert f"{lay.main}$pk" not in indexes
        assert short == [(None,), (20,)]  # the merged row in full form, the new one in short form
    finally:
        new.close()
