"""PostgreSQL destination against the merge model, on a real server."""

from __future__ import annotations

import random
import time

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_platform.changes.merge import TableModel, canonical
from cdc_platform.changes.records import RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.destinations.postgres.sink import PostgresDestination
from cdc_platform.destinations.state import prefix_end
from cdc_platform_tests.workloads import NOW, PLAIN, TABLE, plain_workloads, workloads


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


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(changes=workloads(), seed=st.integers(0, 2**32), now=st.integers(NOW - 250, NOW + 250))
def test_converges_to_the_model_under_any_order_and_duplication(
    pg: PostgresDestination, changes: list[RowChange], seed: int, now: int
) -> None:
    pg.ensure_table(TABLE)
    pg.truncate(TABLE)
    for batch in _batches(changes, random.Random(seed)):
        pg.apply(TABLE, batch, batch="b")
    model = TableModel(TABLE)
    model.apply_all(changes)
    assert canonical(TABLE, pg.read_state(TABLE, now)) == canonical(TABLE, model.visible(now))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(changes=plain_workloads(), seed=st.integers(0, 2**32))
def test_plain_table_converges(pg: PostgresDestination, changes: list[RowChange], seed: int) -> None:
    pg.ensure_table(PLAIN)
    pg.truncate(PLAIN)
    for batch in _batches(changes, random.Random(seed)):
        pg.apply(PLAIN, batch)
    model = TableModel(PLAIN)
    model.apply_all(changes)
    assert canonical(PLAIN, pg.read_state(PLAIN, NOW)) == canonical(PLAIN, model.visible(NOW))


def _b(k: int = 1) -> UpdateBuilder:
    return UpdateBuilder(TABLE, {"k": k}, now=NOW - 100)


def test_current_view_and_typed_columns(pg: PostgresDestination, postgres_url: str) -> None:
    """The view applies TTL with the database clock, joins static columns, shows static-only partitions."""
    ck = {"c1": 1, "c2": "a"}
    wall = int(time.time())
    changes = [
        *changes_of_update(
            _b().insert(ck, {"v": "x", "n": 3, "tags": ["q", "p"]}, 10).update(None, {"s": "st"}, 10).build()
        ),
        *changes_of_update(_b(2).update(None, {"s": "only static"}, 10).build()),
        *changes_of_update(
            UpdateBuilder(TABLE, {"k": 3}, now=wall - 100).insert(ck, {"v": "gone"}, 10, ttl=50).build()
        ),  # expired 50 s ago by the wall clock
        *changes_of_update(
            UpdateBuilder(TABLE, {"k": 4}, now=wall).insert(ck, {"v": "lives"}, 10, ttl=3600).build()
        ),
    ]
    pg.apply(TABLE, changes)
    schema = pg.layout(TABLE).schema
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            f'SELECT k, c1, c2, s, v, n, tags FROM "{schema}"."t$current" ORDER BY k'
        ).fetchall()
    assert rows == [
        (1, 1, "a", "st", "x", 3, ["p", "q"]),
        (2, None, None, "only static", None, None, None),
        (4, 1, "a", None, "lives", None, None),
    ]


def test_failed_batch_leaves_the_table_unchanged(
    pg: PostgresDestination, monkeypatch: pytest.MonkeyPatch
) -> None:
    ck = {"c1": 1, "c2": "a"}
    pg.apply(TABLE, list(changes_of_update(_b().insert(ck, {"v": "before"}, 10).build())))
    before = canonical(TABLE, pg.read_state(TABLE, NOW))
    from cdc_platform.destinations.postgres import sink

    original = sink._Store.write

    def broken_write(self: sink._Store, rows: object, partitions: object) -> None:
        original(self, rows, partitions)  # type: ignore[arg-type]
        raise RuntimeError("disk full, after the rows were written")

    monkeypatch.setattr(sink._Store, "write", broken_write)
    with pytest.raises(Exception, match="disk full") as info:
        pg.apply(
            TABLE,
            list(changes_of_update(_b().update(ck, {"v": "after"}, 20).build())),
            batch="segment-9:4096",
        )
    assert "destination postgres" in str(info.value) and "table ks.t" in str(info.value)
    assert "batch segment-9:4096" in str(info.value)
    monkeypatch.undo()
    assert canonical(TABLE, pg.read_state(TABLE, NOW)) == before


def test_connection_loss_is_retried(pg: PostgresDestination, postgres_url: str) -> None:
    pg.ensure_table(TABLE)
    pid = pg._connection().info.backend_pid
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    result = pg.apply(
        TABLE, list(changes_of_update(_b().insert({"c1": 1, "c2": "a"}, {"v": "x"}, 10).build()))
    )
    assert result.retries >= 1
    assert canonical(TABLE, pg.read_state(TABLE, NOW))


@given(
    prefix=st.binary(min_size=1, max_size=6).filter(lambda b: b.rstrip(b"\xff")), other=st.binary(max_size=8)
)
def test_prefix_end_bounds_exactly_the_strings_with_the_prefix(prefix: bytes, other: bytes) -> None:
    """Rows of a partition are read as a range of the primary key: [pk, prefix_end(pk))."""
    end = prefix_end(prefix)
    assert end is not None
    for s in (other, prefix + other, prefix[:-1] + other):
        assert (prefix <= s < end) == s.startswith(prefix)
    assert prefix_end(b"\xff" * len(prefix)) is None  # every longer string starts with it
