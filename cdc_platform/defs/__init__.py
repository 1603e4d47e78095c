"""The Dagster layer: wires the plain-Python stages into sensors, partitioned assets, checks and jobs.

:func:`build_definitions` turns a :class:`~cdc_platform.defs.config.PipelineConfig` into
``Definitions``; ``cdc_platform.definitions`` is the code location that reads the
configuration named by ``$CDC_PIPELINE_CONFIG`` (default ``config/pipeline.yaml``).
"""

from __future__ import annotations

from dagster import AssetSelection, Definitions

from cdc_platform.defs.assets import BatchRefIOManager, build_stage_assets
from cdc_platform.defs.config import PipelineConfig
from cdc_platform.defs.jobs import build_jobs
from cdc_platform.defs.resources import build_resources
from cdc_platform.defs.sensors import build_capacity_checks, build_sensors, cdc_raw_specs


def build_definitions(config: PipelineConfig) -> Definitions:
    """Assets, checks, jobs, sensors, schedules and resources of one pipeline configuration."""
    stages = build_stage_assets(config)
    selection = AssetSelection.assets(*stages)
    jobs, schedules = build_jobs(config, selection)
    return Definitions(
        assets=[*stages, *cdc_raw_specs(config)],
        asset_checks=[build_capacity_checks(config)],
        jobs=jobs,
        sensors=build_sensors(config),
        schedules=schedules,
        resources={**build_resources(config), "batch_refs": BatchRefIOManager(directory=str(config.staging))},
    )
