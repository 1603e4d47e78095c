"""The staging area: each stage's batch of one segment range, as Parquet, for every run worker.

Layout under the staging directory::

    <node>/<segment id>/<start>-<end>/<stage>/<keyspace.table>.parquet
    <node>/<segment id>/<start>-<end>/validated/<keyspace.table>.rejected.parquet (+ .reasons.json)

``<end>`` is the durable offset read to, or ``eof`` for a whole version 6 segment. Stages
are ``decoded`` and ``validated`` (clear values: the staging directory needs the protection
of ``cdc_raw`` itself) and ``masked`` (what leaves the process). A range's files are written
once (write to a temporary name, then rename) and never changed, so a rerun from failure
reads the same batch, and concurrent readers never see half a file. Losing the staging
directory loses no data: the ledger does not advance until every destination has loaded the
batch, and the next run decodes the range again from the segment.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cdc_platform.changes.arrow import ChangeBatch
from cdc_platform.changes.records import RowChange
from cdc_platform.schema.model import Table

STAGES = ("decoded", "validated", "masked")
REFS = "_refs"  # batch references between assets (cdc_platform.defs.assets.BatchRefIOManager)


class StagingError(RuntimeError):
    """A staged batch is missing or unreadable (the message names the file and the range)."""


@dataclass(frozen=True)
class BatchRef:
    """One segment range as it moves through the stages (small; passed between assets).

    Attributes:
        partition: ``<node>:<segment id>``.
        segment_path: the segment file that was read.
        start: resume position the range starts after.
        end: durable offset read to (``None``: the whole file).
        covered_to: the offset the ledger may record once the range is loaded (``end``, or
            the last entry's position for a whole file).
        completed: the segment was finished when it was read (``COMPLETED``/version 6).
        updated_at: when the durable range last grew (index modification time).
        tables: changes per ``keyspace.table`` in this stage.
        stats: what earlier stages found, for the ledger (counts and names, never values).
    """

    partition: str
    node: str
    segment_id: int
    segment_path: str
    start: int
    end: int | None
    covered_to: int
    completed: bool
    updated_at: float
    tables: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def range_name(self) -> str:
        return f"{self.start}-{'eof' if self.end is None else self.end}"

    @property
    def label(self) -> str:
        """``node1:1767225600000 (4096-81920]``, for messages."""
        return f"{self.partition} ({self.start}-{'eof' if self.end is None else self.end}]"

    def with_tables(self, tables: dict[str, int], **stats: Any) -> BatchRef:
        """This range in the next stage: its table counts, and stats added to the earlier ones."""
        return BatchRef(
            **{**asdict(self), "tables": dict(sorted(tables.items())), "stats": {**self.stats, **stats}}
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BatchRef:
        return cls(**json.loads(text))


class StagingArea:
    """Reads and writes staged batches under one directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"StagingArea({str(self.root)!r})"

    def range_dir(self, ref: BatchRef) -> Path:
        return self.root / ref.node / str(ref.segment_id) / ref.range_name

    def segment_dir(self, node: str, segment_id: int) -> Path:
        return self.root / node / str(segment_id)

    def _path(self, ref: BatchRef, stage: str, table: str, suffix: str = ".parquet") -> Path:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        return self.range_dir(ref) / stage / f"{table}{suffix}"

    def write(
        self, ref: BatchRef, stage: str, table: Table, changes: list[RowChange], *, rejected: bool = False
    ) -> Path:
        """Writes one table's changes of a stage (atomically)."""
        path = self._path(ref, stage, table.qualified_name, ".rejected.parquet" if rejected else ".parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        ChangeBatch.from_changes(table, changes).write_parquet(tmp)
        os.replace(tmp, path)
        return path

    def write_reasons(self, ref: BatchRef, table: Table, reasons: list[list[dict[str, Any]]]) -> Path:
        """The validation failures of the rejected changes, in their order (no values)."""
        path = self._path(ref, "validated", table.qualified_name, ".reasons.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(reasons), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def read(self, ref: BatchRef, stage: str, table: Table, *, rejected: bool = False) -> list[RowChange]:
        """One table's changes of a stage (an empty list when the stage had none).

        Raises:
            StagingError: the stage was written for this table but the file is gone.
        """
        return self.read_batch(ref, stage, table, rejected=rejected).to_changes()

    def read_batch(self, ref: BatchRef, stage: str, table: Table, *, rejected: bool = False) -> ChangeBatch:
        """:meth:`read`, as the staged Arrow batch (empty when the stage had none)."""
        if not rejected and not ref.tables.get(table.qualified_name):
            return ChangeBatch.from_changes(table, [])
        path = self._path(ref, stage, table.qualified_name, ".rejected.parquet" if rejected else ".parquet")
        if rejected and not path.exists():
            return ChangeBatch.from_changes(table, [])
        try:
            return ChangeBatch.read_parquet(table, path)
        except FileNotFoundError:
            raise StagingError(
                f"staged batch {path} of {ref.label}, stage {stage}, is missing (was the staging "
                "directory cleared?); the range will be decoded again by the next run"
            ) from None

    def read_reasons(self, ref: BatchRef, table: Table) -> list[list[dict[str, Any]]]:
        path = self._path(ref, "validated", table.qualified_name, ".reasons.json")
        if not path.exists():
            return []
        result: list[list[dict[str, Any]]] = json.loads(path.read_text(encoding="utf-8"))
        return result

    @property
    def ledger_cache(self) -> Path:
        """Where the sensors keep parsed ledger entries between processes (a cache only)."""
        return self.root / "_ledger_cache.json"

    def remove_segment(self, node: str, segment_id: int) -> None:
        """Deletes every staged range of a retired segment (and its latest batch references)."""
        shutil.rmtree(self.segment_dir(node, segment_id), ignore_errors=True)
        shutil.rmtree(self.root / REFS / "latest" / f"{node}_{segment_id}", ignore_errors=True)

    def prune_run_refs(self, older_than: float) -> int:
        """Deletes the batch references of runs last written before ``older_than`` (epoch seconds)."""
        runs = self.root / REFS / "runs"
        if not runs.is_dir():
            return 0
        removed = 0
        for d in runs.iterdir():
            try:
                if d.stat().st_mtime < older_than:
                    shutil.rmtree(d, ignore_errors=True)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
