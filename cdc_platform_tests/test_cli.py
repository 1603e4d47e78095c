"""The ``cdc-platform`` command line contract."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc_platform.cli import main
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.commitlog.writer import SegmentWriter
from cdc_platform.schema.cql import parse_schema
from cdc_platform_tests.commitlog.test_real_segments import SCHEMA_3013

SCHEMA = """
CREATE KEYSPACE "Shop" WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
CREATE TABLE "Shop"."Items" (
    "Id" int,
    seq int,
    price decimal,
    tags set<text>,
    blob_v blob,
    "When" timestamp,
    PRIMARY KEY ("Id", seq)
) WITH ID = 11111111-2222-1333-8444-555555555555
    AND CLUSTERING ORDER BY (seq DESC);
"""


@pytest.fixture()
def shop_segment(tmp_path: Path) -> tuple[Path, Path]:
    schema_path = tmp_path / "shop.cql"
    schema_path.write_text(SCHEMA)
    table = parse_schema(SCHEMA).table("Shop.Items")
    import decimal

    w = SegmentWriter(tmp_path, 1_767_225_600_000, segment_size=1 << 20)
    w.add(
        UpdateBuilder(table, {"Id": 7}, now=1_767_225_600)
        .insert(
            {"seq": 1},
            {"price": decimal.Decimal("12.50"), "tags": ["b", "a"], "blob_v": b"\xca\xfe", "When": 0},
            1_767_225_600_000_001,
        )
        .mutation()
    )
    w.add(
        UpdateBuilder(table, {"Id": 7}, now=1_767_225_600)
        .delete_row({"seq": 1}, 1_767_225_600_000_002)
        .mutation()
    )
    w.add(
        UpdateBuilder(table, {"Id": 8}, now=1_767_225_600).delete_partition(1_767_225_600_000_003).mutation()
    )
    w.add(
        UpdateBuilder(table, {"Id": 9}, now=1_767_225_600)
        .delete_range({"seq": 2}, {"seq": 5}, 1_767_225_600_000_004, end_inclusive=False)
        .mutation()
    )
    w.close()
    return schema_path, w.path


def test_decode_prints_the_contract_fields(shop_segment: tuple[Path, Path]) -> None:
    schema_path, segment = shop_segment
    result = CliRunner().invoke(main, ["segment", "decode", "--schema", str(schema_path), str(segment)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [x["kind"] for x in lines] == ["row", "row", "partition_delete", "range_delete"]
    first = lines[0]
    for key in (
        "segment_id",
        "position",
        "keyspace",
        "table",
        "kind",
        "partition_key",
        "clustering",
        "cells",
    ):
        assert key in first
    assert first["segment_id"] == 1_767_225_600_000
    assert first["keyspace"] == "Shop" and first["table"] == "Items"
    # Case-sensitive names are quoted as SELECT JSON does.
    assert first["partition_key"] == {'"Id"': 7}
    assert first["clustering"] == {"seq": 1}
    cells = {c["column"]: c for c in first["cells"] if not c.get("collection_deletion")}
    assert cells["blob_v"]["value"] == "0xcafe"
    assert cells["When"]["value"] == "1970-01-01 00:00:00.000Z"
    assert cells["price"]["value"] == 12.50
    assert sorted(c["path"] for c in first["cells"] if c["column"] == "tags" and c["path"]) == ["a", "b"]
    assert all(
        c["timestamp"] == 1_767_225_600_000_001 for c in first["cells"] if not c.get("collection_deletion")
    )
    assert (
        lines[1]["operation"] == "row_delete" and lines[1]["deletion"]["timestamp"] == 1_767_225_600_000_002
    )
    # DESC clustering: the range 2 <= seq < 5 runs from 5 (exclusive) down to 2 (inclusive).
    rng = lines[3]["range"]
    assert rng["start"] == {"clustering": {"seq": 5}, "inclusive": False}
    assert rng["end"] == {"clustering": {"seq": 2}, "inclusive": True}
    positions = [x["position"] for x in lines]
    assert positions == sorted(positions)


def test_decode_real_segments_counts_unknown_tables(tmp_path: Path, cassandra_3013_dir: Path) -> None:
    schema_path = tmp_path / "k1.cql"
    schema_path.write_text(SCHEMA_3013)
    segments = sorted(str(p) for p in cassandra_3013_dir.glob("*.log"))
    result = CliRunner().invoke(main, ["segment", "decode", "--schema", str(schema_path), *segments])
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 1404
    assert (
        "skipped 40 entries of table id 5a1ff267-ace0-3f12-8563-cfae6103c65e (not in the schema)"
        in result.stderr
    )


def test_decode_fails_with_one_line_error_on_corruption(shop_segment: tuple[Path, Path]) -> None:
    schema_path, segment = shop_segment
    data = bytearray(segment.read_bytes())
    data[28] ^= 0xFF  # the first entry's size: Cassandra does not tolerate this
    segment.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["segment", "decode", "--schema", str(schema_path), str(segment)])
    assert result.exit_code == 1
    err = result.stderr.strip().splitlines()
    assert len(err) == 1
    assert str(segment) in err[0] and "segment 1767225600000" in err[0] and "position 28" in err[0]


def test_decode_reports_a_skipped_crc_entry_and_goes_on(shop_segment: tuple[Path, Path]) -> None:
    schema_path, segment = shop_segment
    data = bytearray(segment.read_bytes())
    data[40] ^= 0x01  # inside the first entry's payload
    segment.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["segment", "decode", "--schema", str(schema_path), str(segment)])
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 3
    assert "payload_crc at position 28" in result.stderr


def test_durable_stops_at_the_index_offset(tmp_path: Path) -> None:
    schema_path = tmp_path / "shop.cql"
    schema_path.write_text(SCHEMA)
    table = parse_schema(SCHEMA).table("Shop.Items")
    w = SegmentWriter(tmp_path, 5, segment_size=1 << 20)
    for i in range(3):
        w.add(UpdateBuilder(table, {"Id": i}).update({"seq": 0}, {"blob_v": b"x"}, 10 + i).mutation())
    durable = w.sync()
    w.add(UpdateBuilder(table, {"Id": 99}).update({"seq": 0}, {"blob_v": b"y"}, 99).mutation())
    runner = CliRunner()
    everything = runner.invoke(main, ["segment", "decode", "--schema", str(schema_path), str(w.path)])
    assert len(everything.stdout.splitlines()) == 3  # the 4th entry is not synced: no marker covers it
    w.sync()
    everything = runner.invoke(main, ["segment", "decode", "--schema", str(schema_path), str(w.path)])
    assert len(everything.stdout.splitlines()) == 4
    (tmp_path / w.index_path.name).write_text(str(durable))
    durable_only = runner.invoke(
        main, ["segment", "decode", "--durable", "--schema", str(schema_path), str(w.path)]
    )
    assert [json.loads(x)["partition_key"]['"Id"'] for x in durable_only.stdout.splitlines()] == [0, 1, 2]
    resumed = runner.invoke(
        main, ["segment", "decode", "--start", str(durable), "--schema", str(schema_path), str(w.path)]
    )
    assert [json.loads(x)["partition_key"]['"Id"'] for x in resumed.stdout.splitlines()] == [99]


def test_inspect(shop_segment: tuple[Path, Path]) -> None:
    _, segment = shop_segment
    result = CliRunner().invoke(main, ["segment", "inspect", "--json", str(segment)])
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["version"] == 7 and info["segment_id"] == 1_767_225_600_000
    assert info["entries"] == 4
    assert info["entries_per_table_id"] == {"11111111-2222-1333-8444-555555555555": 4}
    assert info["cdc_index"]["completed"] is True
    assert info["damage"] == [] and info["error"] is None
    text = CliRunner().invoke(main, ["segment", "inspect", str(segment)])
    assert "entries: 4" in text.stdout
    assert f"durable offset {info['cdc_index']['offset']}, COMPLETED" in text.stdout


def test_bad_schema_is_exit_2(tmp_path: Path, shop_segment: tuple[Path, Path]) -> None:
    _, segment = shop_segment
    bad = tmp_path / "bad.cql"
    bad.write_text("CREATE TABLE ks.t (k int PRIMARY KEY);")
    result = CliRunner().invoke(main, ["segment", "decode", "--schema", str(bad), str(segment)])
    assert result.exit_code == 2
    assert "WITH ID" in result.stderr


def test_schema_check(tmp_path: Path) -> None:
    p = tmp_path / "s.cql"
    p.write_text(SCHEMA)
    result = CliRunner().invoke(main, ["schema", "check", str(p)])
    assert result.exit_code == 0
    assert "Shop.Items  id 11111111-2222-1333-8444-555555555555" in result.stdout


def test_unique_table_ids_are_required(tmp_path: Path) -> None:
    p = tmp_path / "dup.cql"
    tid = uuid.uuid4()
    p.write_text(
        f"CREATE TABLE ks.a (k int PRIMARY KEY) WITH ID = {tid};\nCREATE TABLE ks.b (k int PRIMARY KEY) WITH ID = {tid};"
    )
    result = CliRunner().invoke(main, ["schema", "check", str(p)])
    assert result.exit_code == 2
    assert "share id" in result.stderr


def test_inspect_reads_a_live_segment_to_its_durable_offset(tmp_path: Path) -> None:
    """Past an open index's offset Cassandra may be mid-sync: a marker there is half written."""
    import struct

    table = parse_schema(SCHEMA).table("Shop.Items")
    w = SegmentWriter(tmp_path, 1_767_225_600_000, segment_size=1 << 20)
    for i in range(3):
        w.add(
            UpdateBuilder(table, {"Id": i}, now=1_767_225_600)
            .insert({"seq": 1}, {"When": 0}, 1 + i)
            .mutation()
        )
    w.sync()
    durable = int(w.index_path.read_text())
    data = bytearray(w.path.read_bytes())
    data[durable : durable + 8] = struct.pack(">iI", durable + 4096, 0)  # end written, CRC not yet
    w.path.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["segment", "inspect", "--json", str(w.path)])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["entries"], info["read_to"], info["error"], info["damage"]) == (3, durable, None, [])
    text = CliRunner().invoke(main, ["segment", "inspect", str(w.path)])
    assert f"read to the durable offset {durable}" in text.stdout
