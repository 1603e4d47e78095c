"""`cdc-platform demo`, the README's main command, as a user runs it (a subprocess)."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path

from cdc_platform.workload import ShopWorkload

MUTATIONS = 200


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc_platform.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_demo_runs_the_platform_end_to_end(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = _demo("--workdir", str(workdir), "--mutations", str(MUTATIONS), "--waves", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout

    # Every wave was loaded by sensor-requested runs, all of which succeeded.
    assert re.search(r"wave 2/2: \d+ runs in", out)
    assert re.search(r"Checks \((\d+) runs, 0 failed\)", out)
    for check in ("matches_source_batch", "destinations_agree", "passes_quality_rules", "is_fresh"):
        assert re.search(rf"{check}\s+\d+ evaluations", out), check

    # PostgreSQL and ClickHouse (chdb) hold the same rows; the history holds every change once.
    rows = dict(
        (m[0], (int(m[1]), int(m[2]), int(m[3])))
        for m in re.findall(r"^\s+(shop\.\w+)\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.M)
    )
    assert set(rows) == {
        "shop.customers",
        "shop.orders",
        "shop.order_events",
        "shop.sessions",
        "shop.inventory",
    }
    assert all(pg == ch for pg, ch, _ in rows.values()), rows
    assert rows["shop.customers"][0] > 0 and rows["shop.customers"][2] >= rows["shop.customers"][0]
    assert "tokenize     shop.customers.full_name" in out
    retired = re.search(r"Segments: (\d+) written, (\d+) retired", out)
    assert retired and retired[1] == retired[2]

    # No plaintext PII in what it printed or logged, and the generated keys only in secrets/.
    seeds = ShopWorkload(seed=7)
    list(seeds.mutations(MUTATIONS))
    log = (workdir / "demo.log").read_text(encoding="utf-8")
    assert "RUN_SUCCESS" in log
    leaked = [s for s in seeds.pii_seen if len(s) >= 6 and (s in out or s in log)]
    assert not leaked
    keys = list((workdir / "secrets").iterdir())
    assert len(keys) == 3 and all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    files = [workdir / "pipeline.yaml", workdir / "dagster_home" / "dagster.yaml", workdir / "demo.log"]
    for key in keys:
        value = key.read_text(encoding="utf-8")
        assert not [f for f in files if value in f.read_text(encoding="utf-8")]


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = _demo("--workdir", str(tmp_path))
    assert result.returncode == 1
    assert "is not a demo work directory" in result.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
