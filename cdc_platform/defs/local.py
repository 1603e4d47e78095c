"""Driving the sensors and their runs in one process, the way the Dagster daemon does.

Used by ``cdc-platform demo`` and by tests: each tick evaluates every sensor against the
instance with its stored cursor, applies its partition requests and asset events, skips run
requests whose run key already ran (as the daemon does), and executes the others in process
on the same instance, tagged as the daemon tags sensor runs. Production uses the daemon.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dagster import (
    AddDynamicPartitionsRequest,
    AssetCheckEvaluation,
    AssetObservation,
    DagsterInstance,
    Definitions,
    DeleteDynamicPartitionsRequest,
    RunRequest,
    RunsFilter,
    build_sensor_context,
)

RUN_KEY_TAG = "dagster/run_key"
SENSOR_TAG = "dagster/sensor_name"


@dataclass
class RunOutcome:
    sensor: str
    partition: str
    run_key: str
    run_id: str
    success: bool


@dataclass
class LocalDaemon:
    """Ticks sensors and runs what they request, in this process."""

    definitions: Definitions
    instance: DagsterInstance
    cursors: dict[str, str | None] = field(default_factory=dict)
    outcomes: list[RunOutcome] = field(default_factory=list)

    def tick(self) -> list[tuple[str, RunRequest]]:
        """Evaluates every sensor once; returns the run requests not yet run."""
        out: list[tuple[str, RunRequest]] = []
        for sensor_def in self.definitions.sensors or []:
            name = sensor_def.name
            available = self.definitions.resources or {}
            # With an instance ref, as the daemon builds it: run requests for partitions the
            # same tick registers are then resolved against the registered partitions.
            context = build_sensor_context(
                instance_ref=self.instance.get_ref(),
                cursor=self.cursors.get(name),
                definitions=self.definitions,
                sensor_name=name,
                resources={k: available[k] for k in sensor_def.required_resource_keys},
            )
            result = sensor_def.evaluate_tick(context)
            self.cursors[name] = result.cursor
            for request in result.dynamic_partitions_requests or []:
                if isinstance(request, AddDynamicPartitionsRequest):
                    self.instance.add_dynamic_partitions(
                        request.partitions_def_name, list(request.partition_keys)
                    )
                elif isinstance(request, DeleteDynamicPartitionsRequest):
                    for partition in request.partition_keys:
                        self.instance.delete_dynamic_partition(request.partitions_def_name, partition)
            for event in result.asset_events or []:
                if isinstance(event, (AssetObservation, AssetCheckEvaluation)):
                    self.instance.report_runless_asset_event(event)
            for run_request in result.run_requests or []:
                run_key = run_request.run_key
                if run_key and self.instance.get_runs(
                    RunsFilter(tags={RUN_KEY_TAG: run_key, SENSOR_TAG: name}), limit=1
                ):
                    continue
                out.append((name, run_request))
        return out

    def execute(self, sensor: str, request: RunRequest) -> RunOutcome:
        job = self.definitions.resolve_job_def(request.job_name or "replicate")
        tags = {**(request.tags or {}), SENSOR_TAG: sensor}
        if request.run_key:
            tags[RUN_KEY_TAG] = request.run_key
        result = job.execute_in_process(
            run_config=request.run_config,
            instance=self.instance,
            partition_key=request.partition_key,
            tags=tags,
            raise_on_error=False,
        )
        outcome = RunOutcome(
            sensor, request.partition_key or "", request.run_key or "", result.run_id, result.success
        )
        self.outcomes.append(outcome)
        return outcome

    def run_until_idle(
        self,
        *,
        max_ticks: int = 100,
        between: Callable[[int], None] | None = None,
        idle_ticks: int = 1,
    ) -> list[RunOutcome]:
        """Ticks and runs until ``idle_ticks`` consecutive ticks request nothing.

        Args:
            between: called with the tick number before each tick (e.g. to write more segments).
        """
        quiet = 0
        start = len(self.outcomes)
        for n in range(max_ticks):
            if between is not None:
                between(n)
            requests = self.tick()
            if not requests:
                quiet += 1
                if quiet >= idle_ticks:
                    break
                time.sleep(0.05)
                continue
            quiet = 0
            for sensor, request in requests:
                self.execute(sensor, request)
        return self.outcomes[start:]
