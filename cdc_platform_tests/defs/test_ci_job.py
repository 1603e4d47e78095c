"""``dagster job execute`` replicates a directory end to end, as CI runs it (docs/ci.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef

from cdc_platform.defs.ledger import LEDGER_KEY
from cdc_platform.destinations.factory import open_destination
from cdc_platform.pipeline import dump_table
from cdc_platform_tests.defs.conftest import NOW, Platform


def _execute(platform: Platform, home: Path, run_config: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **platform.env,
        "DAGSTER_HOME": str(home),
        "CDC_PIPELINE_CONFIG": str(platform.config_path),
    }
    command = [
        sys.executable,
        "-m",
        "dagster",
        "job",
        "execute",
        "-m",
        "cdc_platform.definitions",
        "-j",
        "replicate_directory",
        "-c",
        str(run_config),
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_dagster_job_execute_replicates_a_directory(platform: Platform, tmp_path: Path) -> None:
    platform.write(300)
    platform.complete()
    home = tmp_path / "dagster_home"
    home.mkdir()
    run_config = tmp_path / "run.yaml"
    directory = platform.root / "nodes" / "node1" / "cdc_raw"
    run_config.write_text(
        yaml.safe_dump(
            {"ops": {"replicate_segments": {"config": {"directory": str(directory), "node": "node1"}}}}
        )
    )

    first = _execute(platform, home, run_config)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    config = platform.config
    with open_destination("postgres", platform.env["CDC_TEST_PG_URL"]) as pg:
        dumped = {n: dump_table(pg, config.schema.table(n), NOW) for n in config.capture}
    assert dumped == platform.expected()

    # The run recorded the ledger like sensor runs do: a second run finds nothing to load.
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        ledger_events = len(instance.fetch_materializations(LEDGER_KEY, limit=1000).records)
    assert ledger_events == len(platform.segments("node1"))
    second = _execute(platform, home, run_config)
    assert second.returncode == 0, second.stderr[-3000:]
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        assert len(instance.fetch_materializations(LEDGER_KEY, limit=1000).records) == ledger_events


def test_a_bad_directory_fails_the_run_with_a_clear_message(platform: Platform, tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    run_config = tmp_path / "run.yaml"
    run_config.write_text(
        yaml.safe_dump(
            {
                "ops": {
                    "replicate_segments": {
                        "config": {"directory": str(tmp_path / "missing"), "node": "node1"}
                    }
                }
            }
        )
    )
    result = _execute(platform, home, run_config)
    assert result.returncode != 0
    assert f"{tmp_path / 'missing'} is not a directory" in result.stdout + result.stderr
