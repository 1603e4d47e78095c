"""The offset ledger, read from Dagster's materialization and run history.

The ledger is the ``cdc/loaded`` asset: one materialization per loaded segment range, whose
metadata holds ``covered_to`` (every destination holds the segment up to this offset),
``completed`` and ``agreed``. Nothing else records offsets: the sensor's cursor only times
the gauge, and a process-wide cache of parsed ledger events is keyed by their storage ids
(an event never changes), so clearing the cursor or restarting the daemon changes nothing.

The sensors also keep a snapshot of that cache in the staging directory, so that the first
tick of a new process (daemon or code server restart) does not parse every ledger event
again. It is only a cache: it is used after a sample of its events was found identical in
the instance (a snapshot of another instance is ignored), and a missing or unreadable
snapshot only costs time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

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
_latest: OrderedDict[str, int] = OrderedDict()  # partition → storage id of its latest entry
_cache_lock = threading.Lock()
_snapshots_read: set[str] = set()
_SNAPSHOT_SAMPLE = 5
log = logging.getLogger(__name__)


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


def _fetch(instance: DagsterInstance, storage_ids: Iterable[int]) -> dict[int, LedgerEntry]:
    """The ledger entries of these events (1,000 per query)."""
    fetched: dict[int, LedgerEntry] = {}
    pending = sorted(storage_ids)
    for i in range(0, len(pending), 1000):
        chunk = pending[i : i + 1000]
        result = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=LEDGER_KEY, storage_ids=chunk), limit=len(chunk)
        )
        for record in result.records:
            mat = record.asset_materialization
            if mat is not None:
                fetched[record.storage_id] = entry_from_metadata(dict(mat.metadata), record.timestamp)
    return fetched


def _read_snapshot(instance: DagsterInstance, path: Path) -> None:
    """Seeds the cache from ``path`` once per process, if its events are this instance's."""
    with _cache_lock:
        if str(path) in _snapshots_read:
            return
        _snapshots_read.add(str(path))
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        entries = {
            int(sid): LedgerEntry(int(c), bool(done), bool(agreed), float(ts))
            for sid, (c, done, agreed, ts) in raw["entries"].items()
        }
    except FileNotFoundError:
        return
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("ledger cache %s is unreadable (%s); reading the ledger from the instance", path, exc)
        return
    if not entries:
        return
    ordered = sorted(entries)
    step = max(1, len(ordered) // _SNAPSHOT_SAMPLE)
    sample = set(ordered[::step][:_SNAPSHOT_SAMPLE]) | {ordered[-1]}
    found = _fetch(instance, sample)
    if any(found.get(sid) != entries[sid] for sid in sample):
        log.warning("ledger cache %s belongs to another instance; ignored", path)
        return
    with _cache_lock:
        for sid, entry in entries.items():
            _cache.setdefault(sid, entry)


def _write_snapshot(path: Path) -> None:
    """Writes the latest entry of every partition seen (atomically: several sensors share it)."""
    with _cache_lock:
        entries = {
            str(sid): [e.covered_to, e.completed, e.agreed, e.timestamp]
            for sid in _latest.values()
            if (e := _cache.get(sid)) is not None
        }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"version": 1, "entries": entries}), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot write the ledger cache %s: %s", path, exc)
        tmp.unlink(missing_ok=True)


def read_ledger(
    instance: DagsterInstance, keys: Iterable[str], *, snapshot: Path | None = None
) -> dict[str, LedgerEntry]:
    """The latest ledger entry of each partition key that has one.

    Two queries at most: the latest event ids per partition, then the events not seen before.

    Args:
        snapshot: a file caching parsed entries across processes (see the module's text).
    """
    wanted = set(keys)
    if not wanted:
        return {}
    if snapshot is not None:
        _read_snapshot(instance, snapshot)
    ids = instance.get_latest_storage_id_by_partition(
        LEDGER_KEY, DagsterEventType.ASSET_MATERIALIZATION, partitions=wanted
    )
    out: dict[str, LedgerEntry] = {}
    missing: dict[int, str] = {}
    with _cache_lock:
        for key, storage_id in ids.items():
            _latest[key] = storage_id
            _latest.move_to_end(key)
            entry = _cache.get(storage_id)
            if entry is None:
                missing[storage_id] = key
            else:
                out[key] = entry
        while len(_latest) > _CACHE_SIZE:
            _latest.popitem(last=False)
    if missing:
        fetched = _fetch(instance, missing)
        with _cache_lock:
            for storage_id, entry in fetched.items():
                _cache[storage_id] = entry
                out[missing[storage_id]] = entry
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        if snapshot is not None and fetched:
            _write_snapshot(snapshot)
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
