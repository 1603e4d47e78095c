"""The ``_cdc.idx`` file next to a segment in ``cdc_raw``.

Content: ASCII decimal durable offset, then ``\\nCOMPLETED`` once the segment is closed.
Cassandra rewrites it (truncate, then write) on every sync, so a reader can find it empty
for a moment: read again. The offset is a logical (uncompressed) position; after crash
replay Cassandra writes the file length with ``COMPLETED``, which for compressed segments
is not logical: treat ``COMPLETED`` as "read to the end".
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from cdc_platform.commitlog.descriptor import SegmentName, parse_segment_name


class CdcIndexError(ValueError):
    """The index file holds something other than ``<offset>[\\nCOMPLETED]``."""


@dataclass(frozen=True)
class CdcIndex:
    """Durable offset and completion of one segment."""

    offset: int
    completed: bool

    @property
    def read_to(self) -> int | None:
        """Where a reader of the durable entries stops: ``None`` (the end of the file) once
        ``COMPLETED`` (after a crash replay the offset is the file length, which for compressed
        segments is not a logical position), else the offset. A ``COMPLETED`` index with offset
        0 holds nothing durable: 0."""
        return None if self.completed and self.offset > 0 else self.offset


def parse_cdc_index(text: str, path: str | Path | None = None) -> CdcIndex:
    """Parses index file content.

    Raises:
        CdcIndexError: the content is not ``<offset>`` optionally followed by ``COMPLETED``.
    """
    lines = text.strip().split("\n")
    try:
        offset = int(lines[0].strip())
    except ValueError:
        raise CdcIndexError(f"{path or 'cdc index'}: {lines[0]!r} is not an offset") from None
    if offset < 0:
        raise CdcIndexError(f"{path or 'cdc index'}: negative offset {offset}")
    rest = [x.strip() for x in lines[1:] if x.strip()]
    if rest not in ([], ["COMPLETED"]):
        raise CdcIndexError(f"{path or 'cdc index'}: unexpected content after the offset: {rest!r}")
    return CdcIndex(offset, bool(rest))


def read_cdc_index(path: str | Path, *, retries: int = 5, delay: float = 0.01) -> CdcIndex | None:
    """Reads an index file, re-reading an empty file (caught mid-rewrite) a few times.

    Returns:
        The index, or ``None`` when the file does not exist or stays empty.
    """
    p = Path(path)
    for attempt in range(retries + 1):
        try:
            text = p.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        if text.strip():
            return parse_cdc_index(text, p)
        if attempt < retries:
            time.sleep(delay)
    return None


def cdc_index_path(segment: str | Path) -> Path | None:
    """The index file of a segment in the same directory, under either spelling, if present."""
    p = Path(segment)
    name: SegmentName = parse_segment_name(p.name)
    for candidate in (
        p.with_name(name.cdc_index_name),
        p.with_name(f"CommitLog-{name.version}-{name.segment_id}-CDC.idx"),
    ):
        if candidate.exists():
            return candidate
    return None


def write_cdc_index(path: str | Path, offset: int, completed: bool = False) -> None:
    """Writes an index file as Cassandra does (truncate, then write, no trailing newline)."""
    with open(path, "w", encoding="ascii") as f:
        f.write(str(offset))
        if completed:
            f.write("\nCOMPLETED")
        f.flush()
        os.fsync(f.fileno())
