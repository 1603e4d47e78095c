"""The partitioned assets of one segment range: decoded → validated → masked → destinations → loaded.

Each stage is an asset partitioned by segment (``<node>:<segment id>``), so the UI shows
per-segment status and asset checks attach to the stage they judge. Batches move through the
staging directory (:mod:`cdc_platform.staging`); between assets only a small
:class:`~cdc_platform.staging.BatchRef` travels, through :class:`BatchRefIOManager`.

A run's range comes from the ``cdc__decoded`` op config (``start``, ``end``), set by the
sensor. A run started from the UI without config (a rerun, a backfill) loads the segment from
its start to what is durable now: loads are idempotent, so this re-applies what was loaded
and adds what is new.
"""

# No `from __future__ import annotations`: Dagster reads the Config annotations at runtime.
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Backoff,
    Config,
    ConfigurableIOManager,
    DagsterInstance,
    DynamicPartitionsDefinition,
    Failure,
    InputContext,
    Jitter,
    MaterializeResult,
    Output,
    OutputContext,
    RetryPolicy,
    asset,
    multi_asset,
)
from pydantic import Field

from cdc_platform.cdc_raw import find_segment, parse_partition_key
from cdc_platform.commitlog.cdc_index import cdc_index_path, read_cdc_index
from cdc_platform.commitlog.descriptor import parse_segment_name
from cdc_platform.defs.config import PipelineConfig
from cdc_platform.defs.ledger import LEDGER_KEY, PARTITIONS_NAME, latest_entry
from cdc_platform.defs.resources import CdcRawSource, destination_resource_key, source_resource_key
from cdc_platform.scheduling import advance
from cdc_platform.stages import compare_destinations, decode_stage, load_stage, mask_stage, validate_stage
from cdc_platform.staging import REFS, BatchRef, StagingArea, StagingError

log = logging.getLogger(__name__)

commitlog_segments = DynamicPartitionsDefinition(name=PARTITIONS_NAME)
SENSOR_TAG = "dagster/sensor_name"

DECODED_KEY = AssetKey(["cdc", "decoded"])
VALIDATED_KEY = AssetKey(["cdc", "validated"])
MASKED_KEY = AssetKey(["cdc", "masked"])
LOAD_RETRY = RetryPolicy(max_retries=5, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def destination_table_key(destination: str, table: str) -> AssetKey:
    keyspace, _, name = table.partition(".")
    return AssetKey([destination, keyspace, name])


# --------------------------------------------------------------------------------------------
# Batch references between assets


class BatchRefIOManager(ConfigurableIOManager):
    """Stores the :class:`BatchRef` each stage hands to the next, as JSON in the staging directory.

    Per run (so a re-execution from failure reads its parent run's references) and per
    partition (the latest, for a run that materializes only later stages).
    """

    directory: str = Field(description="The staging directory.")

    def _run_path(self, run_id: str, key: AssetKey) -> Path:
        return Path(self.directory) / REFS / "runs" / run_id / ("__".join(key.path) + ".json")

    def _latest_path(self, partition: str, key: AssetKey) -> Path:
        return (
            Path(self.directory)
            / REFS
            / "latest"
            / partition.replace(":", "_")
            / ("__".join(key.path) + ".json")
        )

    def handle_output(self, context: OutputContext, obj: BatchRef) -> None:
        text = obj.to_json()
        for path in (
            self._run_path(context.run_id, context.asset_key),
            self._latest_path(obj.partition, context.asset_key),
        ):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)

    def load_input(self, context: InputContext) -> BatchRef:
        upstream = context.upstream_output
        key = context.asset_key
        candidates = []
        if upstream is not None:
            # No upstream run in this execution (only later stages selected): the latest is used.
            with contextlib.suppress(Exception):
                candidates.append(self._run_path(upstream.run_id, key))
        if context.has_partition_key:
            candidates.append(self._latest_path(context.partition_key, key))
        for path in candidates:
            if path.exists():
                return BatchRef.from_json(path.read_text(encoding="utf-8"))
        raise StagingError(
            f"no staged batch reference for {key.to_user_string()}"
            + (f" of {context.partition_key}" if context.has_partition_key else "")
            + ": materialize the earlier stages first (or run the whole job)"
        )


# --------------------------------------------------------------------------------------------
# Assets


class DecodeRange(Config):
    """The segment range a run loads (set by the sensor; defaults for UI reruns and backfills)."""

    start: int = Field(default=0, description="Resume position: entries ending after it are read.")
    end: int = Field(default=-1, description="Read up to this durable offset; -1: what is durable now.")
    updated_at: float = Field(default=0.0, description="When the range became durable (for lag).")


def json_metadata(value: Any) -> Any:
    """Metadata values Dagster shows as JSON (plain types only)."""
    return json.loads(json.dumps(value, default=str))


def ledger_metadata(
    config: PipelineConfig,
    batch: BatchRef,
    covered_to: int,
    completed: bool,
    agreed: bool,
    lag: float,
    operations: Counter[str],
) -> dict[str, Any]:
    """The ``cdc/loaded`` materialization: the ledger position and what the run did."""
    return {
        "segment": batch.partition,
        "node": batch.node,
        "segment_id": str(batch.segment_id),
        "start": batch.start,
        "end": batch.end if batch.end is not None else "eof",
        "covered_to": covered_to,
        "completed": completed,
        "agreed": agreed,
        "lag_seconds": round(max(0.0, lag), 3),
        "changes": sum(batch.tables.values()),
        "changes_by_operation": dict(sorted(operations.items())),
        "changes_by_table": batch.tables,
        "quarantined": batch.stats.get("quarantined", 0),
        "masked_columns": batch.stats.get("masked_columns", []),
        "dead_letters": batch.stats.get("dead_letters", 0),
        "destinations": [d.name for d in config.destinations],
    }


def build_stage_assets(pipeline: PipelineConfig) -> list[AssetsDefinition]:
    """The decode, validate, mask, per-destination load and ledger assets of a configuration."""
    schema = pipeline.schema
    capture = list(pipeline.capture)
    source_keys = {source_resource_key(n) for n in pipeline.nodes}

    @asset(
        key=DECODED_KEY,
        partitions_def=commitlog_segments,
        io_manager_key="batch_refs",
        required_resource_keys=source_keys | {"staging"},
        group_name="cdc",
        kinds={"cassandra", "parquet"},
        description="The segment range's row changes, decoded from the commit log, per table.",
    )
    def decoded(context: AssetExecutionContext, config: DecodeRange) -> Output[BatchRef]:
        node, segment_id = parse_partition_key(context.partition_key)
        if source_resource_key(node) not in source_keys:
            raise KeyError(f"partition {context.partition_key}: no cdc_raw source for node {node!r}")
        source: CdcRawSource = getattr(context.resources, source_resource_key(node))
        path = find_segment(source.search_path(), segment_id)
        if path is None:
            raise FileNotFoundError(
                f"segment {context.partition_key} is in neither {source.directory} nor the archive; "
                "it was retired (nothing is left to load) or the source directory is wrong"
            )
        start, end, completed, updated_at = _resolve_range(path, config)
        result = decode_stage(
            context.resources.staging.area(),
            schema,
            partition=context.partition_key,
            node=node,
            segment_path=path,
            start=start,
            end=end,
            completed=completed,
            updated_at=updated_at,
            capture=capture,
            dead_letter_dir=Path(context.resources.staging.dead_letter),
            key_provider=source.key_provider(),
        )
        return Output(result.ref, metadata=json_metadata(result.metadata))

    @asset(
        key=VALIDATED_KEY,
        ins={"batch": AssetIn(DECODED_KEY)},
        partitions_def=commitlog_segments,
        io_manager_key="batch_refs",
        required_resource_keys={"staging", "quality"},
        group_name="cdc",
        kinds={"great_expectations", "parquet"},
        check_specs=[
            AssetCheckSpec(
                "passes_quality_rules",
                asset=VALIDATED_KEY,
                description="No change failed an error-severity expectation (failing rows are quarantined).",
            )
        ],
        description="Changes that passed the Great Expectations suites; rejections staged for quarantine.",
    )
    def validated(context: AssetExecutionContext, batch: BatchRef) -> Iterator[Any]:
        validator = context.resources.quality.validator(schema, str(pipeline.schema_path))
        result = validate_stage(context.resources.staging.area(), schema, batch, validator)
        yield Output(result.ref, metadata=json_metadata(result.metadata))
        yield AssetCheckResult(
            check_name="passes_quality_rules",
            asset_key=VALIDATED_KEY,
            passed=not result.rejected,
            severity=AssetCheckSeverity.WARN,
            metadata=json_metadata(
                {
                    "validated": validator is not None,
                    "rows_rejected": sum(result.rejected.values()),
                    "rejected_by_table": result.rejected,
                    "failed_expectations": result.failed_expectations,
                }
            ),
        )

    @asset(
        key=MASKED_KEY,
        ins={"batch": AssetIn(VALIDATED_KEY)},
        partitions_def=commitlog_segments,
        io_manager_key="batch_refs",
        required_resource_keys={"staging", "masking", "quarantine"},
        group_name="cdc",
        kinds={"parquet"},
        description="Validated changes with PII/PHI masked; masked rejections stored in the quarantine.",
    )
    def masked(context: AssetExecutionContext, batch: BatchRef) -> Output[BatchRef]:
        policy = context.resources.masking.policy(schema)
        result = mask_stage(
            context.resources.staging.area(), schema, batch, policy, context.resources.quarantine.store()
        )
        return Output(result.ref, metadata=json_metadata(result.metadata))

    assets: list[AssetsDefinition] = [decoded, validated, masked]
    loads = [
        _destination_asset(pipeline, d.name, d.kind, d.pool_name, d.pool_limit) for d in pipeline.destinations
    ]
    assets.extend(loads)
    assets.append(_ledger_asset(pipeline))
    return assets


def _resolve_range(path: Path, config: DecodeRange) -> tuple[int, int | None, bool, float]:
    """``(start, end, completed, updated_at)`` of a run from its config and the index file now."""
    version = parse_segment_name(path.name).version
    idx_path = cdc_index_path(path)
    idx = read_cdc_index(idx_path) if idx_path else None
    if idx is None and version <= 6:
        durable: int | None = None
        completed = True
    elif idx is None:
        durable, completed = 0, False
    else:
        durable, completed = idx.read_to, idx.completed
    mtime = (idx_path or path).stat().st_mtime
    if config.end < 0:
        end = durable
    else:
        end = config.end
        if durable is not None and end > durable:
            raise ValueError(
                f"{path.name}: end {end} is beyond the durable offset {durable} in its index; "
                "entries past the durable offset may still change"
            )
        completed = completed and (durable is None or end >= durable)
    if end is not None and config.start > end:
        raise ValueError(f"{path.name}: start {config.start} is after end {end}")
    return config.start, end, completed, config.updated_at or mtime


def _destination_asset(
    config: PipelineConfig, name: str, kind: str, pool: str, pool_limit: int | None
) -> AssetsDefinition:
    schema = config.schema
    tables = list(config.capture)
    keys = {t: destination_table_key(name, t) for t in tables}
    resource_key = destination_resource_key(name)
    specs = [
        AssetSpec(
            key=keys[t],
            deps=[MASKED_KEY],
            partitions_def=commitlog_segments,
            group_name=name,
            kinds={kind},
            description=f"{t} in the {name} destination ({kind}).",
        )
        for t in tables
    ]
    checks = [
        AssetCheckSpec(
            "matches_source_batch",
            asset=keys[t],
            blocking=True,
            description="Re-planning the masked batch against the destination finds nothing to write.",
        )
        for t in tables
    ]

    @multi_asset(
        name=f"load_{name}",
        specs=specs,
        check_specs=checks,
        ins={"batch": AssetIn(MASKED_KEY)},
        required_resource_keys={resource_key, "staging"},
        retry_policy=LOAD_RETRY,
        pool=pool,
    )
    def load(context: AssetExecutionContext, batch: BatchRef) -> Iterator[Any]:
        if pool_limit is not None:
            check_pool(context.instance, pool, pool_limit, name, context.run.run_id)
        resource = getattr(context.resources, resource_key)
        with resource.open() as destination:
            results = load_stage(context.resources.staging.area(), schema, batch, destination, tables)
        for r in results:
            key = keys[r.table]
            yield MaterializeResult(asset_key=key, metadata=json_metadata(r.metadata(batch)))
            yield AssetCheckResult(
                asset_key=key,
                check_name="matches_source_batch",
                passed=r.contains_batch,
                severity=AssetCheckSeverity.ERROR,
                metadata={"unique_changes": r.unique_changes, "pending_after_load": r.pending_after},
            )

    return load


def check_pool(instance: DagsterInstance, pool: str, limit: int, destination: str, run_id: str) -> None:
    """Makes sure the destination's pool allows at most ``limit`` concurrent loads.

    A pool at the instance's default limit (created by a run's step, before the sensors'
    first tick could create it at ``limit``) is set to ``limit``; the load then goes on unless
    another run holds a slot of it, in which case it fails and is retried. A limit an operator
    set above ``limit`` is refused.

    Raises:
        Failure: another run's load holds a slot (retried), or the pool was set above
            ``limit`` (not retried).
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    info = storage.get_concurrency_info(pool)
    if info.slot_count <= limit:
        return
    why = "concurrent ClickHouse writers of a table would tie row versions and lose changes"
    if not info.using_default_limit:
        raise Failure(
            description=(
                f"pool {pool} allows {info.slot_count} concurrent loads into destination {destination}, "
                f"which takes at most {limit} ({why}): run `dagster instance concurrency set {pool} {limit}`"
            ),
            allow_retries=False,
        )
    storage.set_concurrency_slots(pool, limit)
    log.warning("pool %s had the default limit of %d; set to %d (%s)", pool, info.slot_count, limit, why)
    others = {c.run_id for c in storage.get_concurrency_info(pool).claimed_slots} - {run_id}
    if others:
        raise Failure(
            description=(
                f"pool {pool} was created at the default limit and another run ({', '.join(sorted(others))}) "
                f"is loading destination {destination}: retried once it is done"
            ),
            allow_retries=True,
        )


def _ledger_asset(config: PipelineConfig) -> AssetsDefinition:
    schema = config.schema
    current = [d for d in config.destinations if d.holds_current_state]
    resource_keys = {destination_resource_key(d.name) for d in current}
    deps = [destination_table_key(d.name, t) for d in config.destinations for t in config.capture]
    checks = config.checks

    @asset(
        key=LEDGER_KEY,
        ins={"batch": AssetIn(MASKED_KEY)},
        deps=deps,
        partitions_def=commitlog_segments,
        required_resource_keys=resource_keys | {"staging"},
        group_name="cdc",
        check_specs=[
            AssetCheckSpec(
                "destinations_agree",
                asset=LEDGER_KEY,
                description="Every current-state destination holds the same state for the batch's partitions.",
            ),
            AssetCheckSpec(
                "is_fresh",
                asset=LEDGER_KEY,
                description=f"At most {checks.max_lag_seconds:g} s from the index update to every destination committed.",
            ),
        ],
        description="The offset ledger: up to where every destination holds the segment.",
    )
    def loaded(context: AssetExecutionContext, batch: BatchRef) -> MaterializeResult:
        staging: StagingArea = context.resources.staging.area()
        opened = [getattr(context.resources, destination_resource_key(d.name)).open() for d in current]
        try:
            agreement = compare_destinations(
                staging, schema, batch, opened, attempts=checks.agreement_attempts
            )
        finally:
            for d in opened:
                d.close()
        prev = latest_entry(context.instance, batch.partition)
        covered_to, completed, contiguous = advance(prev, batch.start, batch.covered_to, batch.completed)
        if not contiguous:
            context.log.warning(
                f"{batch.label} starts after the ledger's position {prev.covered_to if prev else 0}: "
                "the position does not move past the gap"
            )
        lag = max(0.0, time.time() - batch.updated_at)
        sensor_run = SENSOR_TAG in context.run.tags
        operations: Counter[str] = Counter()
        for name in sorted(batch.tables):
            operations.update(c.operation for c in staging.read(batch, "masked", schema.table(name)))
        metadata = ledger_metadata(config, batch, covered_to, completed, agreement.agreed, lag, operations)
        return MaterializeResult(
            metadata=json_metadata(metadata),
            check_results=[
                AssetCheckResult(
                    check_name="destinations_agree",
                    passed=agreement.agreed,
                    severity=AssetCheckSeverity.ERROR,
                    metadata=json_metadata(
                        {
                            "compared": [d.name for d in current],
                            "attempts": agreement.attempts,
                            "disagreeing_tables": agreement.disagreeing,
                            "fingerprints": agreement.tables,
                        }
                    ),
                ),
                AssetCheckResult(
                    check_name="is_fresh",
                    # Reruns and backfills load old ranges on purpose: only sensor runs are judged.
                    passed=lag <= checks.max_lag_seconds or not sensor_run,
                    severity=AssetCheckSeverity.WARN,
                    metadata={
                        "lag_seconds": round(lag, 3),
                        "max_lag_seconds": checks.max_lag_seconds,
                        "judged": sensor_run,
                    },
                ),
            ],
        )

    return loaded


def all_keys(assets: Sequence[AssetsDefinition]) -> list[AssetKey]:
    return [k for a in assets for k in a.keys]
