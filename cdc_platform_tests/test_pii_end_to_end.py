"""Known PII goes in; none of it comes out anywhere but masked.

The shop workload records every plaintext it generates (names, e-mails, phones, SSNs,
streets). Its segments are decoded, validated (about 2 % of writes break a rule), masked and
loaded into PostgreSQL and ClickHouse with ``cdc-platform load``; then the plaintexts are
searched for in every destination table, the quarantine, the command's output and the log
records, and ``cdc-platform masking verify`` checks every masked column's format.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc_platform.cli import main
from cdc_platform.quality.quarantine import QuarantineStore
from cdc_platform.workload import SHOP_SCHEMA_CQL, ShopWorkload, write_cluster

REPO = Path(__file__).resolve().parents[1]
KEYS = {
    "CDC_MASK_KEY_2026": "test-mask-key-2026-0123456789",
    "CDC_MASK_KEY_2025": "test-mask-key-2025-0123456789",
    "CDC_VAULT_KEY_2026": "test-vault-key-2026-0123456789",
}


@pytest.fixture()
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)


def test_no_plaintext_pii_leaves_the_pipeline(
    tmp_path: Path,
    database: str,
    clickhouse_server_url: str,
    keys: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    workload = ShopWorkload(seed=11)
    mutations = list(workload.mutations(800))
    nodes = write_cluster(tmp_path / "cluster", mutations, segment_size=64 * 1024)
    segments = [str(p) for paths in nodes.values() for p in paths]
    schema_path = tmp_path / "shop.cql"
    schema_path.write_text(SHOP_SCHEMA_CQL)
    seeds = sorted(s for s in workload.pii_seen if len(s) >= 6)
    assert len(seeds) > 200
    seeds_path = tmp_path / "seeds.txt"
    seeds_path.write_text("\n".join(seeds) + "\n")
    prefix = f"pii{uuid.uuid4().hex[:8]}_"
    destinations = [
        "--postgres",
        database,
        "--clickhouse",
        clickhouse_server_url,
        "--schema-prefix",
        prefix,
    ]

    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(
        main,
        [
            "load",
            "--schema",
            str(schema_path),
            *destinations,
            "--quality",
            str(REPO / "config" / "quality.yaml"),
            "--masking",
            str(REPO / "config" / "masking.yaml"),
            *segments,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "rows quarantined" in result.stderr

    # Rows were rejected (the workload's bad e-mails, negative quantities) and kept, masked.
    counts = QuarantineStore(database).count()
    assert counts.get("shop.customers", 0) > 0, counts

    verify = [
        "masking",
        "verify",
        "--schema",
        str(schema_path),
        "--config",
        str(REPO / "config" / "masking.yaml"),
        "--quarantine",
        database,
        "--seeds",
        str(seeds_path),
        *destinations,
    ]
    report = CliRunner().invoke(main, verify)
    assert report.exit_code == 0, report.output

    # Nothing in what the command printed or logged.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (result.stdout, result.stderr, report.stdout, logged):
        leaked = [s for s in seeds if s in text]
        assert not leaked, f"{len(leaked)} plaintexts printed"

    # The check can fail: the same segments loaded without masking are found out.
    clear = ["--postgres", database, "--schema-prefix", f"clear{uuid.uuid4().hex[:8]}_"]
    loaded = CliRunner().invoke(main, ["load", "--schema", str(schema_path), *clear, *segments])
    assert loaded.exit_code == 0, loaded.output
    unmasked = CliRunner().invoke(main, [*verify[: -len(destinations)], *clear])
    assert unmasked.exit_code == 1
    assert "seed" in unmasked.stdout
    assert not [s for s in seeds if s in unmasked.stdout]
