"""``cdc-platform load`` / ``dump``: segments of three replicas into PostgreSQL, idempotently."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cdc_platform.changes.merge import Model
from cdc_platform.cli import main
from cdc_platform.pipeline import decode_range, render_state
from cdc_platform.workload import SHOP_SCHEMA_CQL, ShopWorkload, write_cluster

NOW = 1_767_300_000  # a day after the workload starts: sessions with short TTLs have expired


def test_load_three_replicas_then_dump_equals_the_model(tmp_path: Path, database: str) -> None:
    workload = ShopWorkload(seed=3)
    mutations = list(workload.mutations(600))
    nodes = write_cluster(tmp_path / "cluster", mutations, segment_size=64 * 1024)
    schema_path = tmp_path / "shop.cql"
    schema_path.write_text(SHOP_SCHEMA_CQL)
    segments = [str(p) for paths in nodes.values() for p in paths]
    runner = CliRunner()
    first = runner.invoke(main, ["load", "--schema", str(schema_path), "--postgres", database, *segments])
    assert first.exit_code == 0, first.output
    dumped = runner.invoke(
        main, ["dump", "--schema", str(schema_path), "--postgres", database, "--now", str(NOW)]
    )
    assert dumped.exit_code == 0, dumped.output

    # The model over one replica's changes: three replicas converge to one copy of the data.
    model = Model(workload.schema.tables)
    for path in nodes["node1"]:
        for changes in decode_range(path, workload.schema).changes.values():
            model.apply(changes)
    expected = [
        render_state(t, model.visible(t.qualified_name, NOW))
        for t in sorted(workload.schema.tables, key=lambda t: t.qualified_name)
    ]
    assert dumped.stdout.splitlines() == expected
    tables = [json.loads(line) for line in dumped.stdout.splitlines()]
    assert {t["table"] for t in tables} == {"customers", "inventory", "order_events", "orders", "sessions"}
    assert sum(len(t["rows"]) for t in tables) > 100

    # A second run changes nothing: no row is written.
    again = runner.invoke(main, ["load", "--schema", str(schema_path), "--postgres", database, *segments])
    assert again.exit_code == 0
    written = [line for line in again.stderr.splitlines() if "rows in" in line]
    assert written and all("-> 0 rows" in line for line in written)
    assert (
        runner.invoke(
            main, ["dump", "--schema", str(schema_path), "--postgres", database, "--now", str(NOW)]
        ).stdout
        == dumped.stdout
    )


def test_load_needs_a_destination(tmp_path: Path) -> None:
    schema_path = tmp_path / "shop.cql"
    schema_path.write_text(SHOP_SCHEMA_CQL)
    seg = tmp_path / "CommitLog-7-1.log"
    seg.write_bytes(b"")
    result = CliRunner().invoke(main, ["load", "--schema", str(schema_path), str(seg)])
    assert result.exit_code == 2 and "at least one destination" in result.stderr
