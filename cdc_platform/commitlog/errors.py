"""Errors raised while reading commit log segments.

Every error names the file, the segment id and the (logical) position, so that an
operator can find the damaged bytes, and where a table is involved, the table.
"""

from __future__ import annotations

from pathlib import Path


class CommitLogError(Exception):
    """Base class: something in a segment cannot be read the way Cassandra reads it."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        segment_id: int | None = None,
        position: int | None = None,
        table: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.segment_id = segment_id
        self.position = position
        self.table = table
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path is not None:
            where.append(f"file {self.path}")
        if self.segment_id is not None:
            where.append(f"segment {self.segment_id}")
        if self.position is not None:
            where.append(f"position {self.position}")
        if self.table is not None:
            where.append(f"table {self.table}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class DescriptorError(CommitLogError):
    """The segment header is unreadable, fails its CRC or has an unsupported version."""


class SegmentIdMismatchError(CommitLogError):
    """The id in the file name differs from the id in the header (Cassandra: recoverable descriptor error)."""


class CorruptSegmentError(CommitLogError):
    """Corruption that Cassandra would not tolerate: the segment stops here."""


class EncryptionError(CommitLogError):
    """The segment is encrypted and cannot be decrypted (no key, wrong key, bad cipher)."""


class MutationDecodeError(CommitLogError):
    """An entry passed its CRC but its mutation cannot be deserialised with the schema at hand."""


class UnknownColumnError(MutationDecodeError):
    """A mutation names a column the schema does not know (neither current nor dropped).

    Cassandra throws here too ("Unknown column ... during deserialization"): the schema
    snapshot is older than the data. Refresh the schema (``cdc-platform schema pull``) and
    read the segment again from the same position.
    """
