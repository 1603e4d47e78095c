"""Jobs: the partitioned replication job, a directory replication for CI, quarantine replay, maintenance.

``replicate_directory`` runs the same stages as the partitioned assets for every segment of
one directory, in one op, and records the same materializations (partition by partition, the
ledger included): a directory replicated by CI and then watched by a sensor is not loaded twice.
"""

# No `from __future__ import annotations`: Dagster reads the Config annotations at runtime.
import time
from collections import Counter
from pathlib import Path
from typing import Any

from dagster import (
    AssetMaterialization,
    AssetSelection,
    Config,
    DefaultScheduleStatus,
    Failure,
    JobDefinition,
    OpExecutionContext,
    ScheduleDefinition,
    define_asset_job,
    in_process_executor,
    job,
    multiprocess_executor,
    op,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from pydantic import Field

from cdc_platform import cdc_raw
from cdc_platform.defs.assets import (
    DECODED_KEY,
    MASKED_KEY,
    VALIDATED_KEY,
    destination_table_key,
    json_metadata,
    ledger_metadata,
)
from cdc_platform.defs.config import PipelineConfig
from cdc_platform.defs.ledger import LEDGER_KEY, PARTITIONS_NAME, REPLICATE_JOB, latest_entry, read_ledger
from cdc_platform.defs.resources import destination_resource_key
from cdc_platform.scheduling import advance, plan_node
from cdc_platform.stages import compare_destinations, decode_stage, load_stage, mask_stage, validate_stage

RUN_RETRY_TAGS = {"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE"}


def replicate_job(selection: AssetSelection, executor: str = "in_process") -> UnresolvedAssetJobDefinition:
    """One run per segment range: every stage asset of one partition.

    ``in_process`` runs the steps in the run's own process (no process start per step:
    lower latency); ``multiprocess`` isolates steps and loads destinations in parallel.
    """
    return define_asset_job(
        REPLICATE_JOB,
        selection=selection,
        description="Decode, validate, mask and load one segment range (a partition) into every destination.",
        tags=RUN_RETRY_TAGS,
        executor_def=in_process_executor if executor == "in_process" else multiprocess_executor,
    )


class ReplicateDirectory(Config):
    """A directory of segments of one node, replicated end to end."""

    directory: str = Field(description="Directory holding CommitLog-*.log (and _cdc.idx) files.")
    node: str = Field(description="The node the segments come from (their partition keys' prefix).")


class ReplayQuarantine(Config):
    """Which quarantined rows to replay (default: every open row)."""

    table: str | None = Field(default=None, description="Only this keyspace.table.")
    ids: list[int] = Field(default_factory=list, description="Only these quarantine ids.")


class Maintenance(Config):
    """TTL refresh and purge settings."""

    grace_seconds: int | None = Field(
        default=None, description="Keep deletions this long (default: each table's gc_grace_seconds)."
    )


def build_jobs(
    pipeline: PipelineConfig, selection: AssetSelection
) -> tuple[list[Any], list[ScheduleDefinition]]:
    schema = pipeline.schema
    capture = list(pipeline.capture)
    dest_keys = {destination_resource_key(d.name) for d in pipeline.destinations}
    current = [d for d in pipeline.destinations if d.holds_current_state]

    @op(
        name="replicate_segments",
        required_resource_keys=dest_keys | {"staging", "quality", "masking", "quarantine"},
        description="Every durable range of the directory's segments not yet in the ledger, through every stage.",
    )
    def replicate_directory_op(context: OpExecutionContext, config: ReplicateDirectory) -> dict[str, Any]:
        directory = Path(config.directory)
        if not directory.is_dir():
            raise Failure(f"{directory} is not a directory")
        states = cdc_raw.scan(config.node, directory)
        keys = [s.key for s in states]
        context.instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
        plan = plan_node(
            states,
            read_ledger(context.instance, keys),
            running=set(),
            failures={},
            now=time.time(),
            max_runs=len(states) + 1,
            backoff_base=0,
            backoff_max=0,
            stale_after=float("inf"),
        )
        if plan.index_errors:
            raise Failure("unreadable index files: " + "; ".join(plan.index_errors))
        staging = context.resources.staging.area()
        validator = context.resources.quality.validator(schema, str(pipeline.schema_path))
        policy = context.resources.masking.policy(schema)
        quarantine = context.resources.quarantine.store()
        destinations = {
            d.name: getattr(context.resources, destination_resource_key(d.name)).open()
            for d in pipeline.destinations
        }
        totals: Counter[str] = Counter()
        try:
            for request in plan.requests:
                s = request.state
                end = None if request.end < 0 else request.end
                decoded = decode_stage(
                    staging,
                    schema,
                    partition=s.key,
                    node=s.node,
                    segment_path=s.path,
                    start=request.start,
                    end=end,
                    completed=s.completed,
                    updated_at=s.updated_at,
                    capture=capture,
                    dead_letter_dir=Path(context.resources.staging.dead_letter),
                )
                events = [
                    AssetMaterialization(
                        DECODED_KEY, partition=s.key, metadata=json_metadata(decoded.metadata)
                    )
                ]
                validated = validate_stage(staging, schema, decoded.ref, validator)
                events.append(
                    AssetMaterialization(
                        VALIDATED_KEY, partition=s.key, metadata=json_metadata(validated.metadata)
                    )
                )
                masked = mask_stage(staging, schema, validated.ref, policy, quarantine)
                events.append(
                    AssetMaterialization(MASKED_KEY, partition=s.key, metadata=json_metadata(masked.metadata))
                )
                batch = masked.ref
                for d in pipeline.destinations:
                    for load in load_stage(staging, schema, batch, destinations[d.name], capture):
                        if not load.contains_batch:
                            raise Failure(
                                f"{batch.label}: {d.name} {load.table} does not contain the batch after loading "
                                f"({load.pending_after} writes still pending)"
                            )
                        events.append(
                            AssetMaterialization(
                                destination_table_key(d.name, load.table),
                                partition=s.key,
                                metadata=json_metadata(load.metadata(batch)),
                            )
                        )
                agreement = compare_destinations(
                    staging, schema, batch, [destinations[d.name] for d in current], attempts=1
                )
                if not agreement.agreed:
                    raise Failure(
                        f"{batch.label}: destinations disagree on {', '.join(agreement.disagreeing)}"
                    )
                covered_to, completed, _ = advance(
                    latest_entry(context.instance, s.key), batch.start, batch.covered_to, batch.completed
                )
                operations: Counter[str] = Counter()
                for name in sorted(batch.tables):
                    operations.update(c.operation for c in staging.read(batch, "masked", schema.table(name)))
                metadata = ledger_metadata(
                    pipeline,
                    batch,
                    covered_to,
                    completed,
                    agreement.agreed,
                    time.time() - batch.updated_at,
                    operations,
                )
                for event in events:
                    context.log_event(event)
                context.log_event(
                    AssetMaterialization(LEDGER_KEY, partition=s.key, metadata=json_metadata(metadata))
                )
                totals["ranges"] += 1
                totals["changes"] += sum(batch.tables.values())
                totals["quarantined"] += masked.quarantined
                context.log.info(f"{batch.label}: {sum(batch.tables.values())} changes loaded")
        finally:
            for dest in destinations.values():
                dest.close()
        return {"segments": len(states), **totals}

    @job(
        name="replicate_directory", tags=RUN_RETRY_TAGS, description="Replicate a directory of segments (CI)."
    )
    def replicate_directory() -> None:
        replicate_directory_op()

    @op(
        name="replay_rows",
        required_resource_keys=dest_keys | {"quality", "masking", "quarantine"},
        description="Re-validates open quarantine rows with the current rules and loads those that pass.",
    )
    def replay_op(context: OpExecutionContext, config: ReplayQuarantine) -> dict[str, int]:
        from cdc_platform.pipeline import revalidator

        store = context.resources.quarantine.store()
        if store is None:
            raise Failure("no quarantine is configured")
        validator = context.resources.quality.validator(schema, str(pipeline.schema_path))
        policy = context.resources.masking.policy(schema)
        destinations = [
            getattr(context.resources, destination_resource_key(d.name)).open() for d in pipeline.destinations
        ]
        try:
            result = store.replay(
                schema,
                revalidator(validator, policy),
                destinations,
                table=config.table,
                ids=config.ids or None,
            )
        finally:
            for d in destinations:
                d.close()
        context.add_output_metadata(
            {
                "replayed": result.replayed,
                "still_failing": result.still_failing,
                "loaded_changes": result.loaded_changes,
            }
        )
        return {"replayed": result.replayed, "still_failing": result.still_failing}

    @job(name="replay_quarantine", description="Replay quarantined rows after a rule or data fix.")
    def replay_quarantine() -> None:
        replay_op()

    @op(
        name="expire_and_purge",
        required_resource_keys={destination_resource_key(d.name) for d in current},
        description="Materialises TTL expirations and purges deleted rows older than the grace period.",
    )
    def maintenance_op(context: OpExecutionContext, config: Maintenance) -> dict[str, int]:
        now = int(time.time())
        refreshed = purged = 0
        for d in current:
            with getattr(context.resources, destination_resource_key(d.name)).open() as dest:
                for table in pipeline.tables:
                    grace = config.grace_seconds
                    if grace is None:
                        grace = int(table.option("gc_grace_seconds", "864000") or 864000)
                    refreshed += dest.refresh(table, now)
                    purged += dest.purge(table, now, grace)
        context.add_output_metadata({"rows_refreshed": refreshed, "rows_purged": purged})
        return {"refreshed": refreshed, "purged": purged}

    @job(
        name="maintenance",
        description="TTL expirations and tombstone purge in the current-state destinations.",
    )
    def maintenance() -> None:
        maintenance_op()

    schedule = ScheduleDefinition(
        name="maintenance_daily",
        job=maintenance,
        cron_schedule="15 3 * * *",
        default_status=DefaultScheduleStatus.RUNNING
        if pipeline.sensor.running_by_default
        else DefaultScheduleStatus.STOPPED,
        description="Daily TTL refresh and purge.",
    )
    jobs: list[JobDefinition | UnresolvedAssetJobDefinition] = [
        replicate_job(selection, pipeline.executor),
        replicate_directory,
        replay_quarantine,
        maintenance,
    ]
    return jobs, [schedule]
