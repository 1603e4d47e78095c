"""The code location: ``dagster dev -m cdc_platform.definitions`` (or ``workspace.yaml``).

The pipeline configuration is read when the code location loads, from
``$CDC_PIPELINE_CONFIG`` or ``config/pipeline.yaml``; secrets are resolved from the
environment only when a run starts.
"""

from __future__ import annotations

from dagster import Definitions, definitions

from cdc_platform.defs import build_definitions
from cdc_platform.defs.config import load_pipeline_config


@definitions
def defs() -> Definitions:
    return build_definitions(load_pipeline_config())
