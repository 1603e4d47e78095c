"""The platform's stages over staged batches: decode → validate → mask → load → reconcile.

Each stage reads the previous stage's batch from the staging area and writes its own, so a
Dagster run retried from a failed step picks up where it stopped. The Dagster assets
(:mod:`cdc_platform.defs.assets`) are thin wrappers around these functions; tests call them
directly. Nothing returned here holds a value of a row: metadata is counts, positions,
names and fingerprints.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdc_platform.changes.merge import Key
from cdc_platform.commitlog.encryption import KeyProvider
from cdc_platform.commitlog.segment import SkippedEntry
from cdc_platform.destinations.base import ApplyResult, Destination
from cdc_platform.destinations.identity import batch_identity, batch_partitions
from cdc_platform.gc_pause import paused_gc
from cdc_platform.masking import MaskingPolicy
from cdc_platform.pipeline import decode_range
from cdc_platform.quality import Validator
from cdc_platform.quality.quarantine import Quarantined, QuarantineStore
from cdc_platform.schema.model import Schema
from cdc_platform.staging import BatchRef, StagingArea

log = logging.getLogger(__name__)

# Entries kept as dead letters: they hold data that could not be decoded. Entries of tables
# that are deliberately not captured are not data loss and are only counted.
DEAD_LETTER_REASONS = frozenset({"unknown_table", "payload_crc"})


# --------------------------------------------------------------------------------------------
# Decode


@dataclass
class DecodeResult:
    ref: BatchRef
    metadata: dict[str, Any]
    dead_letters: Path | None = None


@paused_gc()
def decode_stage(
    staging: StagingArea,
    schema: Schema,
    *,
    partition: str,
    node: str,
    segment_path: Path,
    start: int,
    end: int | None,
    completed: bool,
    updated_at: float,
    capture: Sequence[str],
    dead_letter_dir: Path,
    key_provider: KeyProvider | None = None,
) -> DecodeResult:
    """Decodes the entries with resume positions in ``(start, end]`` and stages them per table.

    Entries of unknown tables and entries failing their payload CRC are written, raw, to
    ``dead_letter_dir/<node>/<segment id>.<start>-<end>.jsonl`` (one JSON object per entry:
    position, reason, table id, message, base64 payload) and counted in the metadata.

    Raises:
        CommitLogError: corruption Cassandra would not tolerate (names segment and position).
    """
    tables = {str(schema.table(n).id) for n in capture}
    decoded = decode_range(
        segment_path, schema, node=node, capture=tables, start=start, end=end, key_provider=key_provider
    )
    covered_to = end if end is not None else max(decoded.resume_position, start)
    ref = BatchRef(
        partition=partition,
        node=node,
        segment_id=decoded.segment_id,
        segment_path=str(segment_path),
        start=start,
        end=end,
        covered_to=covered_to,
        completed=completed,
        updated_at=updated_at,
    )
    counts = {}
    for name in capture:
        changes = decoded.changes.get(name, [])
        if changes:
            staging.write(ref, "decoded", schema.table(name), changes)
        counts[name] = len(changes)
    dead = [s for s in decoded.skipped if s.reason in DEAD_LETTER_REASONS]
    ref = ref.with_tables(counts, decoded=sum(counts.values()), dead_letters=len(dead))
    dead_path = _write_dead_letters(dead_letter_dir, ref, dead) if dead else None
    report = decoded.report
    metadata: dict[str, Any] = {
        "segment": partition,
        "segment_file": str(segment_path),
        "commitlog_version": report.version,
        "compression": report.compression or "none",
        "encrypted": report.encrypted,
        "start": start,
        "end": end if end is not None else "eof",
        "covered_to": covered_to,
        "completed": completed,
        "entries": report.entries,
        "entries_decoded": report.decoded,
        "changes": sum(counts.values()),
        "changes_by_table": counts,
        "entries_not_captured": report.not_captured,
        "unknown_tables": dict(report.unknown_tables),
        "damaged": [f"{d.kind} at {d.position}" for d in report.damaged],
        "truncated": report.truncated,
        "dead_letters": len(dead),
    }
    if dead_path is not None:
        metadata["dead_letter_file"] = str(dead_path)
    for s in dead:
        log.warning(
            "%s: entry at %d kept as a dead letter: %s %s",
            ref.label,
            s.position,
            s.reason,
            s.table_id or "",
        )
    return DecodeResult(ref, metadata, dead_path)


def _write_dead_letters(directory: Path, ref: BatchRef, entries: list[SkippedEntry]) -> Path:
    path = directory / ref.node / f"{ref.segment_id}.{ref.range_name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for s in entries:
            record = {
                "segment": ref.partition,
                "segment_file": ref.segment_path,
                "position": s.position,
                "entry_location": s.entry_location,
                "reason": s.reason,
                "table_id": s.table_id,
                "message": s.message,
                "payload": base64.b64encode(s.payload).decode("ascii"),
            }
            f.write(json.dumps(record) + "\n")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------
# Validate


@dataclass
class ValidateResult:
    ref: BatchRef
    metadata: dict[str, Any]
    rejected: dict[str, int] = field(default_factory=dict)
    failed_expectations: dict[str, int] = field(default_factory=dict)


@paused_gc()
def validate_stage(
    staging: StagingArea, schema: Schema, ref: BatchRef, validator: Validator | None
) -> ValidateResult:
    """Validates each table's decoded changes; stages accepted and rejected ones.

    Raises:
        BatchRejectedError: a table with policy ``fail`` had an error-severity failure.
    """
    accepted_counts: dict[str, int] = {}
    rejected: dict[str, int] = {}
    failed: Counter[str] = Counter()
    summaries: dict[str, Any] = {}
    for name in sorted(ref.tables):
        table = schema.table(name)
        changes = staging.read(ref, "decoded", table)
        if validator is None or not changes:
            accepted, rejections = changes, []
        else:
            outcome = validator.validate(table, changes)
            accepted, rejections = outcome.accepted, outcome.rejected
            summaries[name] = outcome.summary.as_metadata()
            for f in outcome.summary.failed:
                failed[f"{name}: {f.expectation} on {f.column or '-'} ({f.severity})"] += f.rows or 0
        if accepted:
            staging.write(ref, "validated", table, accepted)
        if rejections:
            staging.write(ref, "validated", table, [r.change for r in rejections], rejected=True)
            staging.write_reasons(ref, table, [[f.as_metadata() for f in r.failures] for r in rejections])
            rejected[name] = len(rejections)
        accepted_counts[name] = len(accepted)
    metadata = {
        "segment": ref.partition,
        "validated": validator is not None,
        "changes_accepted": sum(accepted_counts.values()),
        "changes_rejected": sum(rejected.values()),
        "rejected_by_table": rejected,
        "failed_expectations": dict(failed),
        "summaries": summaries,
    }
    return ValidateResult(
        ref.with_tables(accepted_counts, rejected=sum(rejected.values())), metadata, rejected, dict(failed)
    )


# --------------------------------------------------------------------------------------------
# Mask


@dataclass
class MaskResult:
    ref: BatchRef
    metadata: dict[str, Any]
    quarantined: int = 0
    masked_columns: list[str] = field(default_factory=list)


@paused_gc()
def mask_stage(
    staging: StagingArea,
    schema: Schema,
    ref: BatchRef,
    masking: MaskingPolicy | None,
    quarantine: QuarantineStore | None,
) -> MaskResult:
    """Masks what is loaded and what is quarantined; stores the masked rejections.

    Raises:
        RuntimeError: rows were rejected but there is no quarantine to keep them.
    """
    counts: dict[str, int] = {}
    quarantined = 0
    audits: dict[str, Any] = {}
    masked_columns: set[str] = set()
    tables = sorted(set(ref.tables))
    for name in tables:
        table = schema.table(name)
        accepted = staging.read(ref, "validated", table)
        rejected = staging.read(ref, "validated", table, rejected=True)
        reasons = staging.read_reasons(ref, table) if rejected else []
        if rejected and quarantine is None:
            raise RuntimeError(
                f"{ref.label}: {len(rejected)} rejected rows of {name} and no quarantine is configured"
            )
        if masking is not None and (accepted or rejected):
            result = masking.mask(table, accepted + rejected)
            audits[name] = result.audit.as_metadata()
            masked_columns.update(f"{name}.{c}" for c in masking.masked_columns(table))
            accepted, rejected = result.changes[: len(accepted)], result.changes[len(accepted) :]
        if accepted:
            staging.write(ref, "masked", table, accepted)
        if rejected and quarantine is not None:
            quarantine.add(table, [Quarantined(c, r) for c, r in zip(rejected, reasons, strict=True)])
            quarantined += len(rejected)
        counts[name] = len(accepted)
    metadata = {
        "segment": ref.partition,
        "masked": masking is not None,
        "changes": sum(counts.values()),
        "quarantined": quarantined,
        "masked_columns": sorted(masked_columns),
        "audit": audits,
    }
    ref = ref.with_tables(counts, quarantined=quarantined, masked_columns=sorted(masked_columns))
    return MaskResult(ref, metadata, quarantined, sorted(masked_columns))


# --------------------------------------------------------------------------------------------
# Load and check


@dataclass
class TableLoad:
    """One table of one destination after loading a batch, with its containment check."""

    table: str
    result: ApplyResult
    unique_changes: int
    pending_after: int
    keys: int

    @property
    def contains_batch(self) -> bool:
        return self.pending_after == 0

    def metadata(self, ref: BatchRef) -> dict[str, Any]:
        r = self.result
        return {
            "segment": ref.partition,
            "start": ref.start,
            "end": ref.end if ref.end is not None else "eof",
            "changes": r.changes,
            "unique_changes": self.unique_changes,
            "rows_written": r.rows_written,
            "partitions_written": r.partitions_written,
            "seconds": round(r.seconds, 3),
            "retries": r.retries,
            "partitions_in_batch": self.keys,
            "pending_after_load": self.pending_after,
        }


@paused_gc()
def load_stage(
    staging: StagingArea, schema: Schema, ref: BatchRef, destination: Destination, tables: Sequence[str]
) -> list[TableLoad]:
    """Applies each table's masked batch to one destination, then re-plans it.

    Re-planning after the load must find nothing left to write: that is the destination
    containing the batch, whatever else it holds (replicas, later writes).
    """
    out = []
    for name in tables:
        table = schema.table(name)
        staged = staging.read_batch(ref, "masked", table)
        destination.ensure_table(table)
        result = destination.apply_batch(table, staged, batch=ref.label)
        pending = destination.pending_batch(table, staged) if len(staged) else 0
        ids, keys = batch_identity(table, staged)  # column-wise: no change objects
        out.append(TableLoad(name, result, len(ids), pending, len(keys)))
    return out


@dataclass
class Agreement:
    """Whether the current-state destinations hold the same state for a batch's keys."""

    agreed: bool
    attempts: int
    tables: dict[str, dict[str, Any]]  # table → destination → {rows, digest}
    disagreeing: list[str]


@paused_gc()
def compare_destinations(
    staging: StagingArea,
    schema: Schema,
    ref: BatchRef,
    destinations: Sequence[Destination],
    *,
    attempts: int = 5,
    delay: float = 1.0,
    now: int | None = None,
) -> Agreement:
    """Fingerprints the batch's partitions in every destination, at one instant, and compares.

    Loads of other segments (another node's copy of the same writes) may touch the same
    partitions between two reads; a difference is therefore read again up to ``attempts``
    times before the destinations are declared to disagree.
    """
    at = int(time.time()) if now is None else now
    keys_by_table: dict[str, list[Key]] = {}
    for name in sorted(ref.tables):
        table = schema.table(name)
        staged = staging.read_batch(ref, "masked", table)
        if len(staged):
            keys_by_table[name] = batch_partitions(table, staged)
    tables: dict[str, dict[str, Any]] = {}
    disagreeing: list[str] = []
    attempt = 0
    for attempt in range(1, attempts + 1):
        tables, disagreeing = {}, []
        for name, keys in keys_by_table.items():
            table = schema.table(name)
            prints = {d.name: d.fingerprint(table, at, keys) for d in destinations}
            tables[name] = {
                n: {"rows": p.rows, "digest": f"{p.digest & 0xFFFFFFFFFFFFFFFF:016x}"}
                for n, p in prints.items()
            }
            if len(set(prints.values())) > 1:
                disagreeing.append(name)
        if not disagreeing or len(destinations) < 2:
            break
        if attempt < attempts:
            time.sleep(delay)
    return Agreement(not disagreeing, attempt, tables, disagreeing)
