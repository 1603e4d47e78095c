"""The platform end to end on a Dagster instance stored in PostgreSQL.

Three nodes write the same workload (replication factor 3) into their cdc_raw directories
over time; the sensors register segments and request runs for durable ranges as the index
files grow; the runs decode, validate, mask and load PostgreSQL, the TimescaleDB history and
ClickHouse. Then: every destination equals the oracle, the ledger covers every segment,
finished segments are retired, reruns change nothing, and no plaintext PII is anywhere in
the instance's event log.
"""

from __future__ import annotations

import json
import time

from dagster import AssetKey, DagsterEventType, DagsterInstance

from cdc_platform.defs.ledger import LEDGER_KEY, PARTITIONS_NAME, read_ledger
from cdc_platform.defs.local import LocalDaemon
from cdc_platform.defs.sensors import evaluate
from cdc_platform.destinations.factory import open_destination
from cdc_platform.pipeline import dump_table
from cdc_platform.quality.quarantine import QuarantineStore
from cdc_platform_tests.defs.conftest import NOW, Platform, daemon


def _dump(platform: Platform, kind: str, url_env: str, prefix: str = "") -> dict[str, str]:
    config = platform.config
    with open_destination(kind, platform.env[url_env], prefix=prefix) as dest:
        return {n: dump_table(dest, config.schema.table(n), NOW) for n in config.capture}


def _events(instance: DagsterInstance, run_ids: list[str], kind: DagsterEventType) -> list[object]:
    out = []
    for run_id in run_ids:
        out.extend(e.dagster_event for e in instance.all_logs(run_id, of_type=kind))
    return out


def test_three_nodes_converge_through_the_sensors(
    platform: Platform, postgres_instance: DagsterInstance
) -> None:
    instance = postgres_instance
    local = daemon(platform, instance)

    # Near real time: segments are loaded in several runs as their index offsets grow.
    for _ in range(3):
        platform.write(150)
        outcomes = local.run_until_idle()
        assert outcomes and all(o.success for o in outcomes), [o for o in outcomes if not o.success]
    ranged = {o.partition for o in local.outcomes}
    assert any(sum(o.partition == p for o in local.outcomes) > 1 for p in ranged)

    platform.complete()
    assert all(o.success for o in local.run_until_idle())
    local.tick()  # the tick after the last load retires what is finished

    # Every destination equals the oracle; the history holds each unique change once.
    expected = platform.expected()
    assert _dump(platform, "postgres", "CDC_TEST_PG_URL") == expected
    assert (
        _dump(
            platform, "clickhouse", "CDC_TEST_CH_URL", platform.config.destination("clickhouse").schema_prefix
        )
        == expected
    )
    schema = platform.config.schema
    with open_destination("timescaledb", platform.env["CDC_TEST_PG_URL"], prefix="hist_") as ts:
        for name in platform.config.capture:
            history = ts.history(schema.table(name))  # type: ignore[attr-defined]
            assert len({h.change_id for h in history}) == len(history)
    assert len(json.loads(expected["shop.orders"])["rows"]) > 10

    # Rejected rows were kept once, masked, though three replicas delivered them.
    quarantined = QuarantineStore(platform.env["CDC_TEST_PG_URL"]).count()
    assert quarantined.get("shop.customers", 0) > 0

    # The ledger covers every segment to its end; finished segments left cdc_raw.
    keys = [
        f"{node}:{p.name.split('-')[2].split('.')[0]}"
        for node in platform.writers
        for p in platform.segments(node)
    ]
    ledger = read_ledger(instance, keys)
    assert set(ledger) == set(keys) and all(e.completed and e.agreed for e in ledger.values())
    for node in platform.writers:
        assert list((platform.root / "nodes" / node / "cdc_raw").iterdir()) == []
        assert len(list((platform.root / "archive" / node).glob("*.log"))) == len(platform.segments(node))
    staged = [p for node in platform.writers for p in (platform.root / "staging" / node).glob("*")]
    assert staged == []  # retirement removes the segments' staged batches

    # Every check passed; run metadata says what each range did.
    run_ids = [o.run_id for o in local.outcomes]
    evaluations = [
        e.event_specific_data for e in _events(instance, run_ids, DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    names = {(ev.asset_key.path[0], ev.check_name) for ev in evaluations}
    assert ("postgres", "matches_source_batch") in names and ("cdc", "destinations_agree") in names
    failed = [(ev.asset_key.to_user_string(), ev.check_name) for ev in evaluations if not ev.passed]
    assert all(name in ("passes_quality_rules", "is_fresh") for _, name in failed), failed
    record = instance.fetch_materializations(LEDGER_KEY, limit=1).records[0]
    metadata = record.asset_materialization.metadata  # type: ignore[union-attr]
    assert {"covered_to", "changes_by_operation", "quarantined", "masked_columns", "lag_seconds"} <= set(
        metadata
    )

    # No generated plaintext is in any run's events (metadata, logs, check results).
    seeds = [s for s in platform.workload.pii_seen if len(s) >= 6]
    text = "\n".join(
        e.message + json.dumps(str(e.dagster_event)) for r in run_ids for e in instance.all_logs(r)
    )
    assert not [s for s in seeds if s in text]

    # A rerun from the UI (no config: from 0 to what is durable) changes nothing.
    before_pg = _dump(platform, "postgres", "CDC_TEST_PG_URL")
    partition = keys[0]
    job = local.definitions.resolve_job_def("replicate")
    rerun = job.execute_in_process(instance=instance, partition_key=partition)
    assert rerun.success
    for mat in rerun.asset_materializations_for_node("load_postgres"):
        assert mat.metadata["rows_written"].value == 0
    assert _dump(platform, "postgres", "CDC_TEST_PG_URL") == before_pg

    # A fresh daemon (cursors cleared) finds nothing to do: the ledger is the record.
    assert LocalDaemon(local.definitions, instance).tick() == []


def test_sensor_registers_requests_and_prunes(platform: Platform, sqlite_instance: DagsterInstance) -> None:
    instance = sqlite_instance
    platform.write(60)
    definitions = platform.definitions()
    config = platform.config
    source = definitions.resources["cdc_raw_node1"]  # type: ignore[index]
    staging = definitions.resources["staging"].area()  # type: ignore[index]
    result, summary = evaluate(instance, config, source, staging, None)
    keys = [f"node1:{p.name.split('-')[2].split('.')[0]}" for p in platform.segments("node1")]
    assert [r.partition_key for r in result.run_requests or []] == keys
    run = result.run_requests[0]  # type: ignore[index]
    assert run.run_config["ops"]["cdc__decoded"]["config"]["start"] == 0
    assert run.run_config["ops"]["cdc__decoded"]["config"]["end"] > 0
    added = result.dynamic_partitions_requests[0]  # type: ignore[index]
    assert list(added.partition_keys) == keys  # type: ignore[union-attr]
    assert f"{len(keys)} registered" in summary
    observed = [
        e
        for e in result.asset_events or []
        if getattr(e, "asset_key", None) == AssetKey(["cdc_raw", "node1"])
    ]
    assert observed and observed[0].metadata["unloaded_segments"].value == len(keys)  # type: ignore[union-attr]

    # A partition whose segment left cdc_raw and the archive is pruned after the retention,
    # once it is in the ledger; one never loaded stays for an operator to look at.
    local = daemon(platform, instance)
    platform.complete()
    assert all(o.success for o in local.run_until_idle())
    local.tick()
    archived = sorted((platform.root / "archive" / "node1").glob("*.log"))
    assert archived
    instance.add_dynamic_partitions(PARTITIONS_NAME, ["node1:42"])
    later = time.time() + 2 * 3600
    result, _ = evaluate(instance, config, source, staging, None, now=later)
    deletes = [r for r in result.dynamic_partitions_requests or [] if type(r).__name__.startswith("Delete")]
    assert deletes and sorted(deletes[0].partition_keys) == sorted(keys)
    assert not list((platform.root / "archive" / "node1").glob("*.log"))  # expired archives deleted
