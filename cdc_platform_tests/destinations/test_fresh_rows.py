"""The fresh-row path of ``plan_batch`` against the general join and the oracle.

Rows a batch creates skip the merge (``split_fresh``, or ``fresh_columns`` for a staged change
batch → ``stored_keys`` → column-wise write);
everything else falls back to the general path. These tests prove the two agree: the fresh
path's encodings equal the general path's byte for byte, and batches that mix new keys,
stored keys written at older, equal and newer timestamps, deletions, TTLs and collections
leave each destination equal to the model.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_platform.changes.arrow import ChangeBatch
from cdc_platform.changes.merge import Model, TableModel, canonical
from cdc_platform.changes.records import ChangeKind, RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.destinations import columnar
from cdc_platform.destinations.base import Destination
from cdc_platform.destinations.clickhouse import ClickHouseDestination
from cdc_platform.destinations.postgres.sink import PostgresDestination
from cdc_platform.destinations.state import (
    decode_row_state,
    encode_key,
    encode_liveness,
    encode_version,
    fold,
    materialise,
    row_key,
    split_fresh,
)
from cdc_platform.schema.model import Table
from cdc_platform_tests.workloads import NOW, PLAIN, TABLE

_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}


def _plain(key: int, ts: int, op: str, value: str = "a", now: int = NOW - 100) -> list[RowChange]:
    b = UpdateBuilder(PLAIN, {"id": key}, now=now)
    if op == "insert":
        b.insert({}, {"name": value, "score": float(ts), "at": ts}, ts)
    elif op == "update":
        b.update({}, {"name": value}, ts)
    elif op == "ttl":
        b.insert({}, {"name": value}, ts, ttl=300)
    elif op == "delete":
        b.delete_partition(ts)
    elif op == "null":
        b.update({}, {"name": None}, ts)
    else:
        raise ValueError(op)
    return list(changes_of_update(b.build()))


def stagger(change: RowChange, delta: int) -> RowChange:
    """The change with its last cell written ``delta`` later than the others (a write whose
    cells carry different timestamps, as statements of a batch merged into one row do)."""
    if not change.cells:
        return change
    *first, last = change.cells
    return dataclasses.replace(change, cells=(*first, last._replace(timestamp=last.timestamp + delta)))


@st.composite
def _rows(draw: st.DrawFn, table: Table, keys: range, max_ops: int) -> list[RowChange]:
    """Writes of ``table`` (``PLAIN`` or ``TABLE``) on ``keys``, timestamps colliding on purpose."""
    out: list[RowChange] = []
    for _ in range(draw(st.integers(1, max_ops))):
        key = draw(st.sampled_from(keys))
        ts = draw(st.integers(1, 6))
        now = NOW - draw(st.integers(0, 200))
        if table is PLAIN:
            op = draw(
                st.sampled_from(["insert", "insert", "insert", "update", "ttl", "delete", "null", "mixed"])
            )
            if op == "mixed":  # one change whose cells carry different timestamps
                out += [stagger(c, draw(st.integers(-2, 2))) for c in _plain(key, ts, "insert", "m", now)]
                continue
            out += _plain(key, ts, op, draw(st.sampled_from(["a", "b"])), now)
            continue
        b = UpdateBuilder(TABLE, {"k": key}, now=now)
        ck = {"c1": draw(st.integers(0, 2)), "c2": draw(st.sampled_from(["a", "b"]))}
        op = draw(st.sampled_from(["insert", "insert", "update", "delete_row", "range", "tags", "static"]))
        if op == "insert":
            b.insert(ck, {"v": draw(st.sampled_from(["x", "y"])), "n": draw(st.integers(-1, 1))}, ts)
            if draw(st.booleans()):  # its cells at different timestamps
                out += [stagger(c, draw(st.integers(-2, 2))) for c in changes_of_update(b.build())]
                continue
        elif op == "update":
            b.update(ck, {"v": draw(st.sampled_from(["z", None]))}, ts)
        elif op == "delete_row":
            b.delete_row(ck, ts)
        elif op == "range":
            b.delete_range({"c1": 0}, {"c1": 1}, ts)
        elif op == "tags":
            b.add_elements(ck, "tags", ["q"], ts)
        else:
            b.update(None, {"s": "st"}, ts)
        out += list(changes_of_update(b.build()))
    return out


# --------------------------------------------------------------------------------------------
# The split itself (pure)


@settings(max_examples=150, **_SETTINGS)  # type: ignore[arg-type]
@given(data=st.data(), table=st.sampled_from([PLAIN, TABLE]))
def test_fresh_rows_encode_what_the_general_path_stores(data: st.DataObject, table: Table) -> None:
    changes = data.draw(_rows(table, range(6), 30))
    fresh, rest = split_fresh(table, changes)
    assert sorted(map(id, fresh.changes + rest)) == sorted(map(id, changes))  # nothing lost or doubled
    deltas = fold(table, changes)
    rest_rows = {row_key(pk, ck) for pk, d in fold(table, rest).items() for ck in d.rows}
    for i, key in enumerate(fresh.keys):
        assert key not in rest_rows  # no other change of the batch touches a fresh row
        (change,) = [c for c in changes if row_key(*_ids(table, c)) == key]
        assert change is fresh.changes[i]
        pk, ck = _ids(table, change)
        delta = deltas[pk]
        assert delta.record.deletion is None and not delta.record.ranges
        assert fresh.pks[i] == encode_key(pk)
        state = delta.rows[ck]
        m = materialise(table, state, -(1 << 64))
        assert m.exists and m.expires_at is None and m.refresh_at is None
        # Short form exactly when the cells and the liveness share one timestamp.
        stamps = {v.timestamp for v in state.cells.values()}
        stamps |= {state.liveness.timestamp} if state.liveness else set()
        if len(stamps) == 1:
            assert fresh.timestamps[i] == stamps.pop()
            assert fresh.liveness[i] == (b"" if state.liveness else None)
        else:
            assert fresh.timestamps[i] is None
            assert fresh.liveness[i] == (encode_liveness(state.liveness) if state.liveness else None)
        for j, c in enumerate(table.regular):
            version = state.cells.get(c.name)
            if version is None:
                assert fresh.versions[j][i] is None
            else:
                short = fresh.timestamps[i] is not None
                assert fresh.versions[j][i] == (version.value if short else encode_version(version))
            assert fresh.values[j][i] == m.values.get(c.name)
            assert c.name not in state.collections
        # What a destination reads back is the general path's state.
        record = [key, *(col[i] for col in fresh.versions), fresh.liveness[i], None, fresh.timestamps[i]]
        stored = decode_row_state(table.regular, record, False)
        assert (stored.cells, stored.liveness, stored.deletion) == (state.cells, state.liveness, None)
        key_columns = table.partition_key + table.clustering
        values = {**change.partition_key, **change.clustering}
        assert [col[i] for col in fresh.key_values] == [values[c.name] for c in key_columns]


def _ids(table: Table, change: RowChange) -> tuple[tuple[bytes, ...], tuple[bytes | None, ...]]:
    from cdc_platform.changes.merge import clustering_bytes, partition_bytes

    return partition_bytes(table, change.partition_key), clustering_bytes(table, change.clustering)


def test_split_sends_every_unusual_row_to_the_general_path() -> None:
    batch = [
        *_plain(1, 5, "insert"),  # fresh
        *_plain(2, 5, "insert"),  # fresh
        *_plain(3, 5, "insert"),
        *_plain(3, 6, "update"),  # a second change of key 3: both merged
        *_plain(4, 5, "ttl"),  # expiring
        *_plain(5, 5, "insert"),
        *_plain(5, 7, "delete"),  # partition deleted in the same batch
        *_plain(6, 5, "null"),  # a cell tombstone
    ]
    fresh, rest = split_fresh(PLAIN, batch)
    assert [c.partition_key["id"] for c in fresh.changes] == [1, 2]
    assert sorted(c.partition_key["id"] for c in rest) == [3, 3, 4, 5, 5, 6]
    assert {c.kind for c in rest if c.partition_key["id"] == 5} == {
        ChangeKind.ROW,
        ChangeKind.PARTITION_DELETE,
    }


# --------------------------------------------------------------------------------------------
# Destinations: fresh path and fallback in one batch, against the model


def _stored_then_batch(
    dest: Destination,
    table: Table,
    stored: list[RowChange],
    batch: list[RowChange],
    seed: int,
    columnar: bool = False,
) -> None:
    """``columnar``: every batch as a staged change batch (``apply_batch``), as the load stage does."""
    rng = random.Random(seed)
    dest.ensure_table(table)
    dest.truncate(table)  # type: ignore[attr-defined]

    def apply(changes: list[RowChange]) -> int:
        if columnar:
            return dest.apply_batch(table, ChangeBatch.from_changes(table, changes)).rows_written
        return dest.apply(table, changes).rows_written

    i = 0
    while i < len(stored):  # the stored state arrives in a few batches of its own
        n = rng.randint(1, 10)
        apply(stored[i : i + n])
        i += n
    staged = ChangeBatch.from_changes(table, batch)
    # What applying the batch would write, asked both ways (the load stage asks with the batch).
    before = dest.pending(table, batch)
    assert dest.pending_batch(table, staged) == before
    apply(batch)  # one batch: fresh rows and fallbacks together
    assert dest.pending(table, batch) == dest.pending_batch(table, staged) == 0  # contained now
    assert apply(batch) == 0  # its replay writes nothing


def _check(dest: Destination, table: Table, changes: list[RowChange], now: int) -> None:
    model = TableModel(table)
    model.apply_all(changes)
    assert canonical(table, dest.read_state(table, now)) == canonical(table, model.visible(now))


@pytest.mark.parametrize("columnar", [False, True], ids=["changes", "change_batch"])
@settings(max_examples=25, **_SETTINGS)  # type: ignore[arg-type]
@given(
    data=st.data(),
    table=st.sampled_from([PLAIN, TABLE]),
    seed=st.integers(0, 2**32),
    now=st.integers(NOW - 250, NOW + 250),
)
def test_postgres_mixed_batch_equals_the_model(
    pg: PostgresDestination, columnar: bool, data: st.DataObject, table: Table, seed: int, now: int
) -> None:
    stored = data.draw(_rows(table, range(4), 12))  # keys 0–3 may be stored…
    batch = data.draw(_rows(table, range(8), 30))  # …keys 4–7 are new
    _stored_then_batch(pg, table, stored, batch, seed, columnar)
    _check(pg, table, stored + batch, now)


@pytest.mark.parametrize("columnar", [False, True], ids=["changes", "change_batch"])
@settings(max_examples=8, **_SETTINGS)  # type: ignore[arg-type]
@given(
    data=st.data(),
    table=st.sampled_from([PLAIN, TABLE]),
    seed=st.integers(0, 2**32),
    now=st.integers(NOW - 250, NOW + 250),
)
def test_clickhouse_mixed_batch_equals_the_model(
    ch: ClickHouseDestination, columnar: bool, data: st.DataObject, table: Table, seed: int, now: int
) -> None:
    stored = data.draw(_rows(table, range(4), 12))
    batch = data.draw(_rows(table, range(8), 30))
    _stored_then_batch(ch, table, stored, batch, seed, columnar)
    _check(ch, table, stored + batch, now)


def _targeted() -> tuple[list[RowChange], list[RowChange]]:
    stored = [
        *_plain(1, 10, "insert", "b"),
        *_plain(2, 10, "insert", "b"),
        *_plain(3, 20, "delete"),  # a partition record, no row
        *_plain(4, 10, "insert", "a"),
    ]
    batch = [
        *_plain(1, 5, "insert", "z"),  # stored, older: loses
        *_plain(2, 10, "insert", "a"),  # stored, equal timestamp: the greater value ("b") stays
        *_plain(3, 15, "insert", "c"),  # new row under a stored partition deletion: invisible
        *_plain(4, 11, "update", "c"),  # stored, newer: wins
        *_plain(5, 5, "insert", "n"),  # new: fresh
        *_plain(6, 5, "insert", "n"),  # new: fresh
        *_plain(7, 5, "insert", "n"),
        *_plain(7, 9, "delete"),  # new, deleted in the batch
        *_plain(8, 5, "ttl", "t"),  # new, expiring
    ]
    return stored, batch


def _fresh_and_fallback(dest: Destination) -> None:
    stored, batch = _targeted()
    fresh, _ = split_fresh(PLAIN, batch)
    assert [c.partition_key["id"] for c in fresh.changes] == [1, 2, 3, 4, 5, 6]
    dest.ensure_table(PLAIN)
    dest.apply(PLAIN, stored)
    result = dest.apply(PLAIN, batch)
    # 1 and 2 lose to what is stored (nothing written), 3 is shadowed but stored, 4 is
    # merged, 5 and 6 are fresh, 7 and 8 take the general path.
    assert result.rows_written == 6
    model = Model([PLAIN])
    model.apply(stored + batch)
    got = canonical(PLAIN, dest.read_state(PLAIN, NOW))
    assert got == canonical(PLAIN, model.visible(PLAIN.qualified_name, NOW))
    names = {pk[0]: row["name"] for (pk, _), row in got.items()}
    assert names == {
        (1).to_bytes(4, "big"): b"b",
        (2).to_bytes(4, "big"): b"b",
        (4).to_bytes(4, "big"): b"c",
        (5).to_bytes(4, "big"): b"n",
        (6).to_bytes(4, "big"): b"n",
        (8).to_bytes(4, "big"): b"t",
    }
    # Replaying the batch writes nothing: every key is stored now and nothing changes.
    assert dest.apply(PLAIN, batch).rows_written == 0
    assert canonical(PLAIN, dest.read_state(PLAIN, NOW)) == got


def test_postgres_fresh_and_fallback_rows_of_one_batch(pg: PostgresDestination) -> None:
    _fresh_and_fallback(pg)


def test_clickhouse_fresh_and_fallback_rows_of_one_batch(ch: ClickHouseDestination) -> None:
    _fresh_and_fallback(ch)


# Rows 1, 2 and 4 are stored; partition 3 has a record (a partition deletion) and no row.
_ASKED = [encode_key(((i).to_bytes(4, "big"),)) for i in range(1, 7)]


def test_postgres_stored_keys_names_stored_rows_and_recorded_partitions(pg: PostgresDestination) -> None:
    from cdc_platform.destinations.postgres.sink import _Store

    pg.ensure_table(PLAIN)
    pg.apply(PLAIN, _targeted()[0])
    layout = pg.layout(PLAIN)
    found, _ = pg._run(
        "ask", PLAIN, None, lambda conn: _Store(conn, layout).stored_keys(PLAIN, _ASKED, _ASKED)
    )
    assert found == set(_ASKED[:4])


def test_clickhouse_stored_keys_names_stored_rows_and_recorded_partitions(ch: ClickHouseDestination) -> None:
    from cdc_platform.destinations.clickhouse.sink import _Store

    ch.ensure_table(PLAIN)
    ch.apply(PLAIN, _targeted()[0])
    found = _Store(ch.client(), ch.layout(PLAIN), ch.name).stored_keys(PLAIN, _ASKED, _ASKED)
    assert found == set(_ASKED[:4])


@pytest.mark.parametrize("records", [[3], [3, 9]], ids=["all-records-read", "records-looked-up"])
def test_postgres_keys_checked_on_write_name_only_recorded_partitions(
    pg: PostgresDestination, records: list[int]
) -> None:
    """The load's first plan leaves stored rows to the primary key and asks only for partition
    records: read whole when the table has no more of them than the batch has partitions,
    looked up otherwise."""
    from cdc_platform.destinations.postgres.sink import _Store

    pg.ensure_table(PLAIN)
    pg.apply(PLAIN, _targeted()[0] + [c for k in records[1:] for c in _plain(k, 20, "delete")])
    layout = pg.layout(PLAIN)
    asked = _ASKED if len(records) == 1 else [_ASKED[2]]  # key 3 alone: fewer keys than records

    def ask(conn: object) -> set[bytes]:
        return _Store(conn, layout, rows_checked_on_write=True).stored_keys(PLAIN, asked, asked)  # type: ignore[arg-type]

    found, _ = pg._run("ask", PLAIN, None, ask)
    assert found == {_ASKED[2]}


def test_postgres_stored_key_among_fresh_rows_replans_the_batch(
    pg: PostgresDestination, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh row whose key turns out to be stored makes the COPY fail; the batch is planned
    again with the full check, merged, and nothing of the failed COPY remains."""
    from cdc_platform.destinations.postgres import sink

    pg.ensure_table(PLAIN)
    pg.apply(PLAIN, _plain(1, 10, "insert", "old"))
    modes: list[bool] = []
    original = sink._Store.__init__

    def recording(self: sink._Store, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        modes.append(self.rows_checked_on_write)

    monkeypatch.setattr(sink._Store, "__init__", recording)
    batch = ChangeBatch.from_changes(PLAIN, _plain(1, 20, "update", "new") + _plain(2, 5, "insert", "n"))
    result = pg.apply_batch(PLAIN, batch)
    assert modes == [True, False]  # the first plan's COPY failed, the second checked every key
    assert result.rows_written == 2
    got = canonical(PLAIN, pg.read_state(PLAIN, NOW))
    assert {pk[0]: row["name"] for (pk, _), row in got.items()} == {
        (1).to_bytes(4, "big"): b"new",
        (2).to_bytes(4, "big"): b"n",
    }
    model = Model([PLAIN])
    model.apply(_plain(1, 10, "insert", "old") + _plain(1, 20, "update", "new") + _plain(2, 5, "insert", "n"))
    assert got == canonical(PLAIN, model.visible(PLAIN.qualified_name, NOW))
    with pg._connection().cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{pg.layout(PLAIN).schema}"."{pg.layout(PLAIN).main}"')
        assert cur.fetchone() == (2,)


def _replayed_batch_skips_the_merge(dest: Destination, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rerun or another replica's copy of a batch: rows stored exactly as the batch would
    write them are contained already and skip the merge; a row changed since is merged."""
    from cdc_platform.destinations import state

    original = state.plan_batch
    merged: list[int] = []

    def counting(table: Table, changes: list[RowChange], store: object) -> object:
        merged.append(len(changes))
        return original(table, changes, store)  # type: ignore[arg-type]

    monkeypatch.setattr(state, "plan_batch", counting)
    changes = [c for k in range(1, 9) for c in _plain(k, 10 + k, "insert", f"v{k}")]
    mixed = [*_plain(20, 5, "insert"), *_plain(20, 7, "update", "w")]  # a row changed twice: merged
    batch = ChangeBatch.from_changes(
        PLAIN, changes + [stagger(c, 1) for c in _plain(9, 30, "insert")] + mixed
    )
    dest.ensure_table(PLAIN)
    first = dest.apply_batch(PLAIN, batch)
    assert first.rows_written == 10
    dest.apply(PLAIN, _plain(3, 50, "update", "newer"))  # stored row 3 is no longer the batch's
    merged.clear()
    again = dest.apply_batch(PLAIN, batch)
    assert again.rows_written == 0
    # Only row 3 (stored differently now) and the twice-changed row 20 are merged; rows in
    # short form (1–8) and in full form (9, cells at two timestamps) are found unchanged.
    assert merged[-1] == 3
    model = Model([PLAIN])
    model.apply(
        changes + [stagger(c, 1) for c in _plain(9, 30, "insert")] + mixed + _plain(3, 50, "update", "newer")
    )
    assert canonical(PLAIN, dest.read_state(PLAIN, NOW)) == canonical(
        PLAIN, model.visible(PLAIN.qualified_name, NOW)
    )


def test_postgres_replayed_batch_skips_the_merge(
    pg: PostgresDestination, monkeypatch: pytest.MonkeyPatch
) -> None:
    _replayed_batch_skips_the_merge(pg, monkeypatch)


def test_clickhouse_replayed_batch_skips_the_merge(
    ch: ClickHouseDestination, monkeypatch: pytest.MonkeyPatch
) -> None:
    _replayed_batch_skips_the_merge(ch, monkeypatch)


def _stored_fresh_cases(dest: Destination) -> tuple[Any, list[bytes]]:
    """Rows 1, 2 and 4 stored (4 in a partition with an older deletion, merged since: stored in
    full form), partition 3 recorded without a row; candidates 1–6, where 1 is exactly what is
    stored, 2 is newer and 4 holds what is stored in another form."""
    dest.ensure_table(PLAIN)
    dest.apply(PLAIN, [c for k in (1, 2, 4) for c in _plain(k, 10, "insert", f"v{k}")])
    dest.apply(PLAIN, _plain(3, 5, "delete") + _plain(4, 5, "delete"))
    candidates = [c for k in (1, 4) for c in _plain(k, 10, "insert", f"v{k}")]
    candidates += _plain(2, 20, "insert", "newer") + [c for k in (3, 5, 6) for c in _plain(k, 30, "insert")]
    fresh, rest = columnar.fresh_columns(PLAIN, ChangeBatch.from_changes(PLAIN, candidates).data)
    assert fresh is not None and len(fresh) == 6 and not pc.any(rest).as_py()
    return fresh, [encode_key(((k).to_bytes(4, "big"),)) + encode_key(()) for k in range(1, 7)]


def test_postgres_stored_fresh_in_one_round_answers_as_two(pg: PostgresDestination) -> None:
    """The full check's one query names the same stored and unchanged keys as asking
    ``stored_keys`` and then ``unchanged``."""
    from cdc_platform.destinations.postgres.sink import _Store

    fresh, keys = _stored_fresh_cases(pg)
    layout = pg.layout(PLAIN)
    one, _ = pg._run("ask", PLAIN, None, lambda conn: _Store(conn, layout).stored_fresh(PLAIN, fresh))

    def two_rounds(conn: Any) -> tuple[set[bytes], set[bytes]]:
        store = _Store(conn, layout)
        stored = store.stored_keys(PLAIN, fresh.keys.to_pylist(), fresh.pks.to_pylist())
        hit = pc.is_in(fresh.keys, value_set=pa.array(list(stored), pa.binary()))
        return stored, store.unchanged(PLAIN, fresh.filter(hit))

    two, _ = pg._run("ask", PLAIN, None, two_rounds)
    assert one == two == ({keys[0], keys[1], keys[2], keys[3]}, {keys[0]})


def test_clickhouse_stored_fresh_names_stored_and_unchanged_keys(ch: ClickHouseDestination) -> None:
    from cdc_platform.destinations.clickhouse.sink import _Store

    fresh, keys = _stored_fresh_cases(ch)
    found = _Store(ch.client(), ch.layout(PLAIN), ch.name).stored_fresh(PLAIN, fresh)
    assert found == ({keys[0], keys[1], keys[2], keys[3]}, {keys[0]})
