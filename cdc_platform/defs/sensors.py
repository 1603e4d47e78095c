"""One sensor per ``cdc_raw`` directory: register segments, request runs, retire, report usage.

A tick lists the directory (no segment is opened), reads the ledger for the segments present
(:mod:`cdc_platform.defs.ledger`), and lets :func:`cdc_platform.scheduling.plan_node`
decide. Segments are registered as dynamic partitions before their first run. Retirement and
the ``cdc_raw`` gauge happen in the same tick; partition pruning and the gauge run once per
``gauge_interval_seconds``. The cursor only remembers when the gauge last ran.
"""

# No `from __future__ import annotations`: Dagster checks the context annotation at runtime.
import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import (
    AddDynamicPartitionsRequest,
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetObservation,
    AssetSpec,
    DagsterInstance,
    DefaultSensorStatus,
    DeleteDynamicPartitionsRequest,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    multi_asset_check,
    sensor,
)

from cdc_platform import cdc_raw
from cdc_platform.defs.config import PipelineConfig, SourceConfig
from cdc_platform.defs.ledger import (
    PARTITIONS_NAME,
    REPLICATE_JOB,
    read_ledger,
    recent_failures,
    runs_in_flight,
)
from cdc_platform.defs.resources import CdcRawSource, source_resource_key
from cdc_platform.scheduling import NodePlan, is_loaded, plan_node
from cdc_platform.staging import StagingArea

CAPACITY_CHECK = "has_capacity"
CRITICAL_FRACTION = 0.95
DECODE_OP = "cdc__decoded"

log = logging.getLogger(__name__)
_pools_ready: set[str] = set()
_pools_lock = threading.Lock()


def ensure_pools(instance: DagsterInstance, pools: Mapping[str, int | None]) -> None:
    """Creates the destinations' pools before any run needs them: each at its limit, or at
    the instance's default limit where that is ``None``.

    Otherwise the first steps of concurrent runs each create the pool, and on PostgreSQL the
    losers fail: dagster-postgres's insert-then-update runs in a transaction the unique
    violation has aborted. One sensor process creating them first avoids the race. Pools that
    exist are left as they are (limits set with ``dagster instance concurrency set``).
    """
    with _pools_lock:
        pending = set(pools) - _pools_ready
        if not pending:
            return
        storage = instance.event_log_storage
        if not storage.supports_global_concurrency_limits:
            _pools_ready.update(pending)
            return
        existing = storage.get_concurrency_keys()
        for pool in sorted(pending - existing):
            try:
                limit = pools[pool]
                if limit is None:
                    storage.initialize_concurrency_limit_to_default(pool)
                else:
                    storage.set_concurrency_slots(pool, limit)
            except Exception as exc:  # another process made it first: fine
                log.warning("could not create pool %s (%s); runs will create it", pool, exc)
        _pools_ready.update(pending & storage.get_concurrency_keys())


def cdc_raw_key(node: str) -> AssetKey:
    return AssetKey(["cdc_raw", node])


def cdc_raw_specs(config: PipelineConfig) -> list[AssetSpec]:
    """The ``cdc_raw`` directories as external assets (observed by the sensors)."""
    return [
        AssetSpec(
            key=cdc_raw_key(s.node),
            group_name="cdc_raw",
            kinds={"cassandra"},
            description=f"Node {s.node}'s cdc_raw directory ({s.cdc_raw}); Cassandra stops CDC writes when it "
            f"reaches cdc_total_space ({s.cdc_total_space_mb} MiB).",
        )
        for s in config.sources
    ]


def gauge(
    instance: DagsterInstance,
    source: CdcRawSource,
    states: list[cdc_raw.SegmentState],
    plan: NodePlan | None,
    now: float,
    warn_fraction: float,
) -> tuple[dict[str, Any], bool, AssetCheckSeverity, float]:
    """Usage of ``cdc_raw`` and its oldest unloaded segment: metadata, pass, severity, fraction."""
    use = cdc_raw.usage(states, source.cdc_total_space_mb)
    if plan is not None:
        unloaded = plan.unloaded
    else:
        ledger = read_ledger(instance, [s.key for s in states])
        unloaded = [s for s in states if not is_loaded(s, ledger.get(s.key))]
    oldest = min(unloaded, key=lambda s: s.segment_id, default=None)
    metadata: dict[str, Any] = {
        "bytes_used": use.bytes_used,
        "capacity_bytes": use.capacity_bytes,
        "used_fraction": round(use.fraction, 4),
        "segments": use.segments,
        "unloaded_segments": len(unloaded),
        "oldest_unloaded_segment": oldest.key if oldest else "",
        "oldest_unloaded_age_seconds": round(max(0.0, now - oldest.updated_at), 1) if oldest else 0.0,
    }
    if plan is not None:
        metadata.update(
            {
                "runs_in_flight": len(plan.running),
                "backing_off": plan.backing_off[:20],
                "index_errors": plan.index_errors[:20],
            }
        )
    return metadata, use.fraction < warn_fraction, _severity(use.fraction), use.fraction


def _severity(fraction: float) -> AssetCheckSeverity:
    return AssetCheckSeverity.ERROR if fraction >= CRITICAL_FRACTION else AssetCheckSeverity.WARN


def build_sensors(config: PipelineConfig) -> list[SensorDefinition]:
    return [_sensor(config, s) for s in config.sources]


def _sensor(config: PipelineConfig, source_config: SourceConfig) -> SensorDefinition:
    node = source_config.node
    resource_key = source_resource_key(node)

    @sensor(
        name=f"cdc_raw_{node}",
        job_name=REPLICATE_JOB,
        minimum_interval_seconds=config.sensor.interval_seconds,
        default_status=DefaultSensorStatus.RUNNING
        if config.sensor.running_by_default
        else DefaultSensorStatus.STOPPED,
        required_resource_keys={resource_key, "staging"},
        description=f"Watches {source_config.cdc_raw} (node {node}): registers segments, requests runs for "
        "durable ranges not in the ledger, retires loaded segments, reports cdc_raw usage.",
    )
    def watch(context: SensorEvaluationContext) -> SensorResult:
        source: CdcRawSource = getattr(context.resources, resource_key)
        staging: StagingArea = context.resources.staging.area()
        result, summary = evaluate(context.instance, config, source, staging, context.cursor)
        context.log.info(summary)
        return result

    return watch


def evaluate(
    instance: DagsterInstance,
    config: PipelineConfig,
    source: CdcRawSource,
    staging: StagingArea,
    cursor: str | None,
    now: float | None = None,
) -> tuple[SensorResult, str]:
    """One tick for one node: the sensor's result and a one-line summary for the tick log."""
    now = time.time() if now is None else now
    state = json.loads(cursor) if cursor else {}
    node = source.node
    ensure_pools(instance, {d.pool_name: d.pool_limit for d in config.destinations})
    prefix = f"{node}{cdc_raw.PARTITION_SEPARATOR}"
    try:
        states = source.scan()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"cdc_raw directory {source.directory} of node {node} does not exist"
        ) from None
    ledger = read_ledger(instance, [s.key for s in states], snapshot=staging.ledger_cache)
    running = runs_in_flight(instance, prefix)
    failures = recent_failures(instance, ledger, prefix, now)
    plan = plan_node(
        states,
        ledger,
        running=running,
        failures=failures,
        now=now,
        max_runs=config.sensor.max_runs_per_tick,
        backoff_base=config.sensor.failure_backoff_seconds,
        backoff_max=config.sensor.max_backoff_seconds,
        stale_after=config.sensor.stale_after_seconds,
    )
    registered = set(instance.get_dynamic_partitions(PARTITIONS_NAME))
    new_keys = [s.key for s in states if s.key not in registered]
    requests = [
        RunRequest(
            run_key=r.run_key,
            partition_key=r.state.key,
            run_config={
                "ops": {
                    DECODE_OP: {"config": {"start": r.start, "end": r.end, "updated_at": r.state.updated_at}}
                }
            },
            tags={
                "cdc/node": node,
                "cdc/segment": str(r.state.segment_id),
                "cdc/range": f"{r.start}-{r.end}",
            },
        )
        for r in plan.requests
    ]
    retirement = config.retirement
    retired = []
    for s in plan.retire:
        if retirement.mode == "keep":
            continue
        cdc_raw.retire(s, retirement.mode, retirement.archive)
        staging.remove_segment(s.node, s.segment_id)
        retired.append(s.key)
    partition_requests: list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest] = []
    if new_keys:
        partition_requests.append(AddDynamicPartitionsRequest(PARTITIONS_NAME, new_keys))
    events: list[AssetObservation | AssetCheckEvaluation] = []
    pruned: list[str] = []
    if now - float(state.get("gauge_at", 0)) >= config.sensor.gauge_interval_seconds:
        gone = set(retired)
        remaining = [s for s in states if s.key not in gone]
        metadata, passed, severity, _ = gauge(
            instance, source, remaining, plan, now, config.checks.cdc_raw_warn_fraction
        )
        events.append(AssetObservation(asset_key=cdc_raw_key(node), metadata=metadata))
        events.append(
            AssetCheckEvaluation(
                asset_key=cdc_raw_key(node),
                check_name=CAPACITY_CHECK,
                passed=passed,
                severity=severity,
                metadata=metadata,
            )
        )
        pruned = _prune(instance, config, source, registered, {s.key for s in remaining}, now)
        staging.prune_run_refs(now - config.retirement.retention_hours * 3600)
        if pruned:
            partition_requests.append(DeleteDynamicPartitionsRequest(PARTITIONS_NAME, pruned))
        state["gauge_at"] = now
    summary = (
        f"node {node}: {len(states)} segments, {len(requests)} runs requested, {len(plan.running)} in flight, "
        f"{len(plan.backing_off)} backing off, {len(plan.deferred)} deferred, {len(retired)} retired, "
        f"{len(new_keys)} registered, {len(pruned)} pruned"
        + (f"; index errors: {'; '.join(plan.index_errors[:5])}" if plan.index_errors else "")
    )
    return (
        SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=partition_requests,
            asset_events=events,
            cursor=json.dumps(state),
        ),
        summary,
    )


def _prune(
    instance: DagsterInstance,
    config: PipelineConfig,
    source: CdcRawSource,
    registered: set[str],
    present: set[str],
    now: float,
) -> list[str]:
    """Deletes expired archives and returns the partitions to drop after the retention period."""
    retirement = config.retirement
    retention = retirement.retention_hours * 3600
    node = source.node
    archived: set[str] = set()
    if retirement.mode == "archive" and retirement.archive is not None:
        for path in cdc_raw.expired_archives(retirement.archive, node, retention, now):
            cdc_raw.delete_archived(path)
        directory = Path(retirement.archive) / node
        if directory.is_dir():
            archived = {
                cdc_raw.partition_key(node, int(m.group(2)))
                for p in directory.iterdir()
                if (m := cdc_raw.SEGMENT_NAME.match(p.name))
            }
    prefix = f"{node}{cdc_raw.PARTITION_SEPARATOR}"
    gone = [k for k in registered if k.startswith(prefix) and k not in present and k not in archived]
    if not gone:
        return []
    ledger = read_ledger(instance, gone)
    # A partition without a ledger entry was never loaded: it stays for an operator to look at.
    return sorted(k for k in gone if (e := ledger.get(k)) is not None and now - e.timestamp >= retention)


def build_capacity_checks(config: PipelineConfig) -> AssetChecksDefinition:
    """``has_capacity`` on each ``cdc_raw`` asset, on demand (the sensors also report it)."""
    specs = [
        AssetCheckSpec(
            CAPACITY_CHECK,
            asset=cdc_raw_key(s.node),
            description=f"cdc_raw usage below {config.checks.cdc_raw_warn_fraction:.0%} of cdc_total_space "
            f"(ERROR from {CRITICAL_FRACTION:.0%}: Cassandra rejects CDC writes when it is full).",
        )
        for s in config.sources
    ]
    keys = {source_resource_key(s.node) for s in config.sources}

    @multi_asset_check(specs=specs, required_resource_keys=keys, can_subset=True, name="cdc_raw_capacity")
    def capacity(context: AssetCheckExecutionContext) -> Any:
        now = time.time()
        for check_key in sorted(context.selected_asset_check_keys, key=lambda k: k.asset_key.path):
            node = check_key.asset_key.path[-1]
            source: CdcRawSource = getattr(context.resources, source_resource_key(node))
            states = source.scan()
            metadata, passed, severity, _ = gauge(
                context.instance, source, states, None, now, config.checks.cdc_raw_warn_fraction
            )
            yield AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=CAPACITY_CHECK,
                passed=passed,
                severity=severity,
                metadata=metadata,
            )

    return capacity
