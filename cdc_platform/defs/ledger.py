"""The offset ledger, read from Dagster's materialization and run history.

The ledger is the ``cdc/loaded`` asset: one materialization per loaded segment range, whose
metadata holds ``covered_to`` (every destination holds the segment up to this offset),
``completed`` and ``agreed``. Nothing else records offsets: the sensor's cursor only times
the gauge, and a process-wide cache of parsed ledger events is keyed by their storage ids
(an event never changes), so clearing the cursor or restarting the daemon changes nothing.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
)

from cdc_platform.scheduling import Failures, LedgerEntry

PARTITIONS_NAME = "commitlog_segments"
LEDGER_KEY = AssetKey(["cdc", "loaded"])
REPLICATE_JOB = "replicate"
PARTITION_TAG = "dagster/partition"
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
FAILED = [DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
FAILURE_LOOKBACK_SECONDS = 86_400.0

_CACHE_SIZE = 200_000
_cache: OrderedDict[int, LedgerEntry] = OrderedDict()
_cache_lock = threading.Lock()


def entry_from_metadata(metadata: dict[str, object], timestamp: float) -> LedgerEntry:
    def value(name: str) -> object:
        v = metadata.get(name)
        return getattr(v, "value", v)

    covered = value("covered_to")
    return LedgerEntry(
        covered_to=int(covered) if isinstance(covered, (int, float)) else 0,
        completed=bool(value("completed")),
        agreed=bool(value("agreed")),
        timestamp=timestamp,
    )


def read_ledger(instance: DagsterInstance, keys: Iterable[str]) -> dict[str, LedgerEntry]:
    """The latest ledger entry of each partition key that has one.

    Two queries at most: the latest event ids per partition, then the events not seen before.
    """
    wanted = set(keys)
    if not wanted:
        return {}
    ids = instance.get_latest_storage_id_by_partition(
        LEDGER_KEY, DagsterEventType.ASSET_MATERIALIZATION, partitions=wanted
    )
    out: dict[str, LedgerEntry] = {}
    missing: dict[int, str] = {}
    with _cache_lock:
        for key, storage_id in ids.items():
            entry = _cache.get(storage_id)
            if entry is None:
                missing[storage_id] = key
            else:
                out[key] = entry
    if missing:
        fetched: dict[int, LedgerEntry] = {}
        pending = sorted(missing)
        for i in range(0, len(pending), 1000):
            chunk = pending[i : i + 1000]
            result = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=LEDGER_KEY, storage_ids=chunk), limit=len(chunk)
            )
            for record in result.records:
                mat = record.asset_materialization
                if mat is None:
                    continue
                fetched[record.storage_id] = entry_from_metadata(dict(mat.metadata), record.timestamp)
        with _cache_lock:
            for storage_id, entry in fetched.items():
                _cache[storage_id] = entry
                out[missing[storage_id]] = entry
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return out


def latest_entry(instance: DagsterInstance, key: str) -> LedgerEntry | None:
    """The latest ledger entry of one partition (for the ledger asset itself)."""
    result = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=LEDGER_KEY, asset_partitions=[key]), limit=1
    )
    for record in result.records:
        mat = record.asset_materialization
        if mat is not None:
            return entry_from_metadata(dict(mat.metadata), record.timestamp)
    return None


def runs_in_flight(instance: DagsterInstance, prefix: str = "") -> set[str]:
    """Partition keys (starting with ``prefix``) with a queued or running run.

    Any job counts, not only ``replicate``: a materialization launched from the asset graph
    in the UI runs as Dagster's implicit asset job.
    """
    records = instance.get_run_records(RunsFilter(statuses=IN_FLIGHT))
    out = set()
    for r in records:
        key = r.dagster_run.tags.get(PARTITION_TAG)
        if key and key.startswith(prefix):
            out.add(key)
    return out


def recent_failures(
    instance: DagsterInstance, ledger: dict[str, LedgerEntry], prefix: str = "", now: float | None = None
) -> dict[str, Failures]:
    """Failed or canceled runs per partition since its latest ledger entry (last day, any job)."""
    now = time.time() if now is None else now
    import datetime as dt

    since = dt.datetime.fromtimestamp(now - FAILURE_LOOKBACK_SECONDS, tz=dt.UTC)
    records = instance.get_run_records(RunsFilter(statuses=FAILED, updated_after=since), limit=5000)
    counts: dict[str, list[float]] = {}
    for r in records:
        key = r.dagster_run.tags.get(PARTITION_TAG)
        if not key or not key.startswith(prefix):
            continue
        ended = r.end_time or (r.update_timestamp.timestamp() if r.update_timestamp else now)
        entry = ledger.get(key)
        if entry is not None and ended <= entry.timestamp:
            continue  # a later success reset the count
        counts.setdefault(key, []).append(ended)
    return {k: Failures(len(v), max(v)) for k, v in counts.items()}
