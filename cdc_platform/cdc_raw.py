"""A node's ``cdc_raw`` directory: what is there, what is durable, what can be retired.

Plain file-system code, used by the Dagster sensors (and callable from a test without
Dagster). Listing is cheap: one ``scandir``, one ``stat`` per index file and a read of those
that changed; segments are never opened.

Durability follows Cassandra:

- version 7+ segments (4.0, 4.1, 5.0) are linked into ``cdc_raw`` when they are created;
  their ``_cdc.idx`` holds the offset up to which the segment is synced, and ``COMPLETED``
  once the segment is finished. Without an index file nothing is durable yet.
- version 6 segments (3.0, 3.11) are linked only once they are finished and have no index:
  the whole file is durable.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from cdc_platform.commitlog.cdc_index import CdcIndexError, parse_cdc_index
from cdc_platform.commitlog.descriptor import CDC_INDEX_NAME, SEGMENT_NAME

PARTITION_SEPARATOR = ":"
_IDX_SUFFIXES = ("_cdc.idx", "-CDC.idx")
# Index files read before, per directory: path → (mtime ns, size, text). Only files whose
# modification time was at least STABLE_NS old when read are kept: any later rewrite then
# carries a newer time, however coarse the file system's clock.
_index_cache: dict[str, dict[str, tuple[int, int, str]]] = {}
STABLE_NS = 1_000_000_000


def partition_key(node: str, segment_id: int) -> str:
    """The Dagster partition key of a segment: ``<node>:<segment id>``."""
    return f"{node}{PARTITION_SEPARATOR}{segment_id}"


def parse_partition_key(key: str) -> tuple[str, int]:
    """``(node, segment id)`` of a partition key.

    Raises:
        ValueError: the key is not ``<node>:<segment id>``.
    """
    node, sep, rest = key.rpartition(PARTITION_SEPARATOR)
    if not sep or not node or not rest.isdigit():
        raise ValueError(f"partition key {key!r} is not <node>:<segment id>")
    return node, int(rest)


@dataclass(frozen=True)
class SegmentState:
    """One segment as ``cdc_raw`` shows it now.

    Attributes:
        durable: the offset up to which entries are durable (``None``: the whole file, for
            version 6 segments and segments whose index says ``COMPLETED``).
        completed: Cassandra finished the segment (``COMPLETED`` in its index, or version 6).
        updated_at: when the durable range last grew (the index file's, else the segment's,
            modification time), for lag measurements.
        index_error: the index file could not be parsed (reported; the segment waits).
    """

    node: str
    segment_id: int
    version: int
    path: Path
    index_path: Path | None
    size: int
    durable: int | None
    completed: bool
    updated_at: float
    index_error: str | None = None

    @property
    def key(self) -> str:
        return partition_key(self.node, self.segment_id)

    @property
    def has_durable_data(self) -> bool:
        return self.durable is None or self.durable > 0


def scan(node: str, directory: Path) -> list[SegmentState]:
    """The segments in ``directory``, in segment id order.

    Raises:
        FileNotFoundError: the directory does not exist.
    """
    logs: dict[int, tuple[int, Path, os.stat_result]] = {}
    indexes: dict[int, Path] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if name.endswith(".log"):
                m = SEGMENT_NAME.match(name)
                if m:
                    try:
                        st = entry.stat()
                    except FileNotFoundError:  # retired between listing and stat
                        continue
                    logs[int(m.group(2))] = (int(m.group(1)), Path(entry.path), st)
            elif name.endswith(".idx"):
                m = CDC_INDEX_NAME.match(name)
                if m:
                    indexes[int(m.group(2))] = Path(entry.path)
    out: list[SegmentState] = []
    previous = _index_cache.get(str(directory), {})
    cache: dict[str, tuple[int, int, str]] = {}
    for segment_id in sorted(logs):
        version, path, st = logs[segment_id]
        idx = indexes.get(segment_id)
        out.append(_state(node, segment_id, version, path, st, idx, previous, cache))
    _index_cache[str(directory)] = cache  # files gone from the directory are forgotten
    return out


def _read_index(
    idx: Path, previous: dict[str, tuple[int, int, str]], cache: dict[str, tuple[int, int, str]]
) -> tuple[str, float] | None:
    """The index file's text and modification time (``None``: it is gone).

    An unchanged file (same modification time and size as when it was last read, and stable
    then) is not read again.
    """
    key = str(idx)
    try:
        before = idx.stat()
    except FileNotFoundError:
        return None
    known = previous.get(key)
    if known is not None and known[0] == before.st_mtime_ns and known[1] == before.st_size:
        cache[key] = known
        return known[2], before.st_mtime
    try:
        text = idx.read_text(encoding="ascii")
        after = idx.stat()
    except FileNotFoundError:
        return None
    if (
        text.strip()
        and after.st_mtime_ns == before.st_mtime_ns
        and after.st_size == before.st_size
        and time.time_ns() - after.st_mtime_ns >= STABLE_NS
    ):
        cache[key] = (after.st_mtime_ns, after.st_size, text)
    return text, after.st_mtime


def _state(
    node: str,
    segment_id: int,
    version: int,
    path: Path,
    st: os.stat_result,
    idx: Path | None,
    previous: dict[str, tuple[int, int, str]],
    cache: dict[str, tuple[int, int, str]],
) -> SegmentState:
    if version <= 6 and idx is None:
        return SegmentState(node, segment_id, version, path, None, st.st_size, None, True, st.st_mtime)
    if idx is None:
        return SegmentState(node, segment_id, version, path, None, st.st_size, 0, False, st.st_mtime)
    text, mtime = "", st.st_mtime
    for _ in range(5):  # Cassandra rewrites the file in place: an empty read is a rewrite in progress
        read = _read_index(idx, previous, cache)
        text, mtime = read if read is not None else ("", mtime)
        if text.strip():
            break
        time.sleep(0.002)
    if not text.strip():
        return SegmentState(node, segment_id, version, path, idx, st.st_size, 0, False, st.st_mtime)
    try:
        index = parse_cdc_index(text, idx)
    except CdcIndexError as exc:
        return SegmentState(node, segment_id, version, path, idx, st.st_size, 0, False, mtime, str(exc))
    return SegmentState(
        node, segment_id, version, path, idx, st.st_size, index.read_to, index.completed, mtime
    )


def find_segment(directories: list[Path], segment_id: int) -> Path | None:
    """The segment file with this id in the first directory holding it."""
    for d in directories:
        if not d.is_dir():
            continue
        for p in d.glob(f"CommitLog-*-{segment_id}.log"):
            m = SEGMENT_NAME.match(p.name)
            if m and int(m.group(2)) == segment_id:
                return p
    return None


@dataclass(frozen=True)
class Usage:
    """How full a ``cdc_raw`` directory is."""

    bytes_used: int
    capacity_bytes: int
    segments: int

    @property
    def fraction(self) -> float:
        return self.bytes_used / self.capacity_bytes if self.capacity_bytes else 0.0


def usage(states: list[SegmentState], capacity_mb: int) -> Usage:
    """Usage as Cassandra counts it: the size of the segment files in ``cdc_raw``."""
    return Usage(sum(s.size for s in states), capacity_mb * 1024 * 1024, len(states))


def retire(state: SegmentState, mode: str, archive: Path | None) -> Path | None:
    """Removes a loaded segment (and its index) from ``cdc_raw``.

    Args:
        mode: ``archive`` moves both files to ``archive/<node>/`` (their modification time
            becomes the retirement time, which starts the retention period); ``delete``
            removes them; ``keep`` leaves them.

    Returns:
        Where the segment went (``None`` when deleted or kept).
    """
    if mode == "keep":
        return state.path
    if mode == "delete":
        if state.index_path is not None:
            state.index_path.unlink(missing_ok=True)
        state.path.unlink(missing_ok=True)
        return None
    if archive is None:
        raise ValueError("archive mode needs an archive directory")
    target = archive / state.node
    target.mkdir(parents=True, exist_ok=True)
    now = time.time()
    # The index first: a segment seen without its index would look not durable, never loaded twice.
    for p in (state.index_path, state.path):
        if p is None or not p.exists():
            continue
        dest = target / p.name
        shutil.move(str(p), dest)
        os.utime(dest, (now, now))
    return target / state.path.name


def expired_archives(archive: Path, node: str, retention_seconds: float, now: float) -> list[Path]:
    """Archived segment files of ``node`` older than the retention period."""
    directory = archive / node
    if not directory.is_dir():
        return []
    cutoff = now - retention_seconds
    out = []
    with os.scandir(directory) as entries:
        for e in entries:
            if e.name.endswith(".log") and SEGMENT_NAME.match(e.name) and e.stat().st_mtime < cutoff:
                out.append(Path(e.path))
    return sorted(out)


def delete_archived(path: Path) -> None:
    """Deletes an archived segment and its index file."""
    m = SEGMENT_NAME.match(path.name)
    if m:
        for suffix in _IDX_SUFFIXES:
            path.with_name(f"CommitLog-{m.group(1)}-{m.group(2)}{suffix}").unlink(missing_ok=True)
    path.unlink(missing_ok=True)
