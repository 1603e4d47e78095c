"""The ledger cache snapshot: a new process reads few events, and never another instance's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetMaterialization, DagsterInstance, instance_for_test

from cdc_platform.defs import ledger
from cdc_platform.scheduling import LedgerEntry

KEYS = [f"node1:{1_767_225_600_000 + i}" for i in range(40)]


def _load(instance: DagsterInstance, base: int) -> None:
    for i, key in enumerate(KEYS):
        for covered in (base + i, base + i + 1000):  # two ranges: the second is the latest
            instance.report_runless_asset_event(
                AssetMaterialization(
                    asset_key=ledger.LEDGER_KEY,
                    partition=key,
                    metadata={"covered_to": covered, "completed": i % 2 == 0, "agreed": True},
                )
            )


def _new_process() -> None:
    """Forgets what this process parsed, as a restarted daemon has."""
    ledger._cache.clear()
    ledger._latest.clear()
    ledger._snapshots_read.clear()


@pytest.fixture()
def fetched(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    calls: list[int] = []
    real = ledger._fetch

    def counting(instance: DagsterInstance, storage_ids: object) -> dict[int, LedgerEntry]:
        ids = list(storage_ids)  # type: ignore[call-overload]
        calls.extend(ids)
        return real(instance, ids)

    monkeypatch.setattr(ledger, "_fetch", counting)
    _new_process()
    yield calls
    _new_process()


def test_a_new_process_reads_the_snapshot_not_every_event(tmp_path: Path, fetched: list[int]) -> None:
    snapshot = tmp_path / "staging" / "_ledger_cache.json"
    with instance_for_test() as instance:
        _load(instance, 0)
        first = ledger.read_ledger(instance, KEYS, snapshot=snapshot)
        assert {k: e.covered_to for k, e in first.items()} == {k: i + 1000 for i, k in enumerate(KEYS)}
        assert len(fetched) == len(KEYS) and snapshot.exists()

        _new_process()
        fetched.clear()
        assert ledger.read_ledger(instance, KEYS, snapshot=snapshot) == first
        assert 0 < len(fetched) <= ledger._SNAPSHOT_SAMPLE + 1  # the verification sample only

        # A newer range of one segment is read from the instance, and the snapshot follows.
        instance.report_runless_asset_event(
            AssetMaterialization(
                asset_key=ledger.LEDGER_KEY,
                partition=KEYS[0],
                metadata={"covered_to": 5000, "completed": True, "agreed": True},
            )
        )
        fetched.clear()
        assert ledger.read_ledger(instance, KEYS, snapshot=snapshot)[KEYS[0]].covered_to == 5000
        assert len(fetched) == 1
        _new_process()
        assert ledger.read_ledger(instance, KEYS, snapshot=snapshot)[KEYS[0]].covered_to == 5000


def test_a_snapshot_of_another_instance_is_ignored(tmp_path: Path, fetched: list[int]) -> None:
    snapshot = tmp_path / "_ledger_cache.json"
    with instance_for_test() as one:
        _load(one, 0)
        ledger.read_ledger(one, KEYS, snapshot=snapshot)
    _new_process()
    # The same storage ids, other events: a new database behind the same staging directory.
    with instance_for_test() as other:
        _load(other, 7)
        got = ledger.read_ledger(other, KEYS, snapshot=snapshot)
        assert {k: e.covered_to for k, e in got.items()} == {k: i + 1007 for i, k in enumerate(KEYS)}


def test_an_unreadable_snapshot_costs_time_only(tmp_path: Path, fetched: list[int]) -> None:
    snapshot = tmp_path / "_ledger_cache.json"
    snapshot.write_text("{not json")
    with instance_for_test() as instance:
        _load(instance, 0)
        got = ledger.read_ledger(instance, KEYS, snapshot=snapshot)
        assert len(got) == len(KEYS) and len(fetched) == len(KEYS)


def test_sensors_create_the_pools_before_runs_race_for_them(postgres_instance: DagsterInstance) -> None:
    from cdc_platform.defs.config import DestinationConfig
    from cdc_platform.defs.sensors import ensure_pools
    from cdc_platform_tests.defs.conftest import template

    postgres = DestinationConfig("postgres_pooltest", "postgres", "X")
    clickhouse = DestinationConfig("clickhouse_pooltest", "clickhouse", "X")
    pools = {d.pool_name: d.pool_limit for d in (postgres, clickhouse)} | {"cdc_custom_pooltest": 3}
    storage = postgres_instance.event_log_storage
    assert not set(pools) & storage.get_concurrency_keys()
    ensure_pools(postgres_instance, pools)
    assert set(pools) <= storage.get_concurrency_keys()
    slots = {pool: storage.get_concurrency_info(pool).slot_count for pool in pools}
    assert slots == {
        "cdc_postgres_pooltest": template()["concurrency"]["pools"]["default_limit"],  # dagster.yaml's: 2
        "cdc_clickhouse_pooltest": 1,  # one writer per ClickHouse table, whatever the default
        "cdc_custom_pooltest": 3,
    }
    # A pool that exists keeps the limit an operator set.
    storage.set_concurrency_slots("cdc_clickhouse_pooltest", 2)
    ensure_pools(postgres_instance, {"cdc_clickhouse_pooltest": 1})
    assert storage.get_concurrency_info("cdc_clickhouse_pooltest").slot_count == 2


def test_a_clickhouse_load_takes_a_pool_of_one(postgres_instance: DagsterInstance) -> None:
    """A pool at 1 is fine; one a run created at the default limit (2 here) is set to 1 and
    the load goes on, unless another run holds a slot (then it fails, to be retried); a limit
    an operator set above 1 is refused without retries."""
    from dagster import Failure

    from cdc_platform.defs.assets import check_pool

    storage = postgres_instance.event_log_storage
    storage.set_concurrency_slots("cdc_clickhouse_checktest", 1)
    check_pool(postgres_instance, "cdc_clickhouse_checktest", 1, "clickhouse", "run-a")

    storage.initialize_concurrency_limit_to_default("cdc_clickhouse_default")
    assert storage.get_concurrency_info("cdc_clickhouse_default").slot_count == 2
    check_pool(postgres_instance, "cdc_clickhouse_default", 1, "clickhouse", "run-a")
    info = storage.get_concurrency_info("cdc_clickhouse_default")
    assert (info.slot_count, info.using_default_limit) == (1, False)

    storage.initialize_concurrency_limit_to_default("cdc_clickhouse_busy")
    assert storage.claim_concurrency_slot("cdc_clickhouse_busy", "run-b", "load_clickhouse").is_claimed
    with pytest.raises(Failure, match="another run \\(run-b\\)") as busy:
        check_pool(postgres_instance, "cdc_clickhouse_busy", 1, "clickhouse", "run-a")
    assert busy.value.allow_retries is True
    assert storage.get_concurrency_info("cdc_clickhouse_busy").slot_count == 1

    storage.set_concurrency_slots("cdc_clickhouse_checktest", 2)
    with pytest.raises(
        Failure, match="dagster instance concurrency set cdc_clickhouse_checktest 1"
    ) as failure:
        check_pool(postgres_instance, "cdc_clickhouse_checktest", 1, "clickhouse", "run-a")
    assert failure.value.allow_retries is False
