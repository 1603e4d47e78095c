"""The quarantine (dead-letter) store: rejected rows, kept masked, until replayed or discarded.

Table ``cdc_meta.quarantine`` in a PostgreSQL database (the destination's or another):
one row per distinct rejected change (replica copies and reruns of the same change are the
same row: ``change_id`` is its content identity), holding

- ``reasons``: which expectations failed, on which column, and the value class — never the
  value;
- ``row_json``: the masked change as ``segment decode`` prints it (for people);
- ``change``: the masked change, exactly (a one-row Arrow change batch, for replay);
- provenance (keyspace, table, node, segment id, position), first and last seen, attempts,
  and a status: ``open``, ``replayed`` or ``discarded``.

Replay re-validates open rows with the current rules (a rule that can only be checked on the
clear value — on a masked column — is not held against the masked copy), loads the rows
that now pass into every destination (loads are idempotent, so replaying twice changes
nothing) and marks them replayed.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import pyarrow as pa
import pyarrow.ipc as ipc
from psycopg.types.json import Jsonb

from cdc_platform.changes.arrow import ChangeBatch
from cdc_platform.changes.identity import change_id
from cdc_platform.changes.records import RowChange, change_to_json
from cdc_platform.schema.model import Schema, Table

if TYPE_CHECKING:
    from cdc_platform.destinations.base import Destination

log = logging.getLogger(__name__)

SCHEMA = "cdc_meta"
DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.quarantine (
    id bigserial PRIMARY KEY,
    change_id uuid NOT NULL UNIQUE,
    keyspace text NOT NULL,
    "table" text NOT NULL,
    node text,
    segment_id bigint,
    position bigint,
    operation text NOT NULL,
    reasons jsonb NOT NULL,
    row_json jsonb NOT NULL,
    change bytea NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 1,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'replayed', 'discarded')),
    resolved_at timestamptz
);
CREATE INDEX IF NOT EXISTS quarantine_open ON {SCHEMA}.quarantine (keyspace, "table") WHERE status = 'open';
"""


@dataclass(frozen=True)
class Quarantined:
    """A rejected change to store: the masked change and why it was rejected."""

    change: RowChange
    reasons: list[dict[str, Any]]  # expectation, column, severity, value_class — no values


@dataclass(frozen=True)
class QuarantineEntry:
    """A stored row (``change`` only when loaded for replay)."""

    id: int
    keyspace: str
    table: str
    segment_id: int | None
    position: int | None
    operation: str
    reasons: list[dict[str, Any]]
    first_seen: dt.datetime
    last_seen: dt.datetime
    attempts: int
    status: str
    row_json: dict[str, Any]


@dataclass
class ReplayResult:
    replayed: int
    still_failing: int
    loaded_changes: int


def encode_change(table: Table, change: RowChange) -> bytes:
    """The change, exactly, as Arrow IPC of a one-row change batch."""
    batch = ChangeBatch.from_changes(table, [change])
    sink = io.BytesIO()
    with ipc.new_stream(sink, batch.data.schema) as writer:
        writer.write_table(batch.data)
    return sink.getvalue()


def decode_change(table: Table, raw: bytes) -> RowChange:
    data: pa.Table = ipc.open_stream(raw).read_all()
    (change,) = ChangeBatch(table, data).to_changes()
    return change


class QuarantineStore:
    """Quarantine in PostgreSQL.

    Args:
        url: connection string (credentials from the environment or ``~/.pgpass``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._ready = False

    def __repr__(self) -> str:
        return "QuarantineStore()"

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.url)
        if not self._ready:
            conn.execute(DDL)
            conn.commit()
            self._ready = True
        return conn

    def add(self, table: Table, rows: Sequence[Quarantined]) -> int:
        """Stores rejected (already masked) changes; a change seen again bumps ``attempts``.

        Returns:
            How many rows were new.
        """
        if not rows:
            return 0
        new = 0
        with self._connect() as conn:
            for q in rows:
                c = q.change
                cur = conn.execute(
                    f"""INSERT INTO {SCHEMA}.quarantine
                        (change_id, keyspace, "table", node, segment_id, position, operation, reasons, row_json, change)
                        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                        ON CONFLICT (change_id) DO UPDATE SET
                            last_seen = now(), attempts = quarantine.attempts + 1,
                            reasons = EXCLUDED.reasons
                        RETURNING (xmax = 0)""",
                    (
                        change_id(table, c),
                        table.keyspace,
                        table.name,
                        c.node,
                        c.segment_id,
                        c.position,
                        c.operation,
                        Jsonb(q.reasons),
                        Jsonb(json.loads(change_to_json(c, table))),
                        encode_change(table, c),
                    ),
                )
                row = cur.fetchone()
                new += 1 if row and row[0] else 0
        return new

    def entries(
        self, *, status: str | None = "open", table: str | None = None, limit: int = 100
    ) -> list[QuarantineEntry]:
        clauses = []
        params: list[Any] = []
        if status:
            clauses.append("status = %s")
            params.append(status)
        if table:
            ks, _, name = table.partition(".")
            clauses.append('keyspace = %s AND "table" = %s')
            params += [ks, name]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as conn:
            rows = conn.execute(
                f"""SELECT id, keyspace, "table", segment_id, position, operation, reasons, first_seen,
                           last_seen, attempts, status, row_json
                    FROM {SCHEMA}.quarantine {where} ORDER BY id LIMIT %s""",
                (*params, limit),
            ).fetchall()
        return [QuarantineEntry(*r) for r in rows]

    def count(self, *, status: str = "open") -> dict[str, int]:
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT keyspace || '.' || \"table\", count(*) FROM {SCHEMA}.quarantine WHERE status = %s GROUP BY 1",
                (status,),
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def discard(self, ids: Iterable[int]) -> int:
        with self._connect() as conn:
            cur = conn.execute(
                f"UPDATE {SCHEMA}.quarantine SET status = 'discarded', resolved_at = now() "
                "WHERE id = ANY(%s) AND status = 'open'",
                (list(ids),),
            )
            return cur.rowcount

    def replay(
        self,
        schema: Schema,
        revalidate: Callable[[Table, list[RowChange]], tuple[list[RowChange], list[RowChange]]],
        destinations: Sequence[Destination],
        *,
        table: str | None = None,
        ids: Sequence[int] | None = None,
    ) -> ReplayResult:
        """Re-validates open rows and loads those that pass.

        Args:
            schema: the current schema.
            revalidate: ``(table, changes) -> (passing, failing)`` with the current rules.
            destinations: where passing rows are loaded.
            table: only this ``keyspace.table``.
            ids: only these quarantine ids.
        """
        clauses = ["status = 'open'"]
        params: list[Any] = []
        if table:
            ks, _, name = table.partition(".")
            clauses.append('keyspace = %s AND "table" = %s')
            params += [ks, name]
        if ids is not None:
            clauses.append("id = ANY(%s)")
            params.append(list(ids))
        replayed = failing = loaded = 0
        with self._connect() as conn:
            rows = conn.execute(
                f'SELECT id, keyspace, "table", change FROM {SCHEMA}.quarantine WHERE {" AND ".join(clauses)} '
                "ORDER BY id FOR UPDATE",
                params,
            ).fetchall()
            by_table: dict[str, list[tuple[int, RowChange]]] = {}
            for qid, ks, name, raw in rows:
                t = schema.table(f"{ks}.{name}")
                by_table.setdefault(t.qualified_name, []).append((qid, decode_change(t, raw)))
            for name, items in by_table.items():
                t = schema.table(name)
                passing, _ = revalidate(t, [c for _, c in items])
                passing_ids = {id(c) for c in passing}
                ok_ids = [qid for qid, c in items if id(c) in passing_ids]
                bad_ids = [qid for qid, c in items if id(c) not in passing_ids]
                if passing:
                    for dest in destinations:
                        dest.apply(t, passing, batch=f"quarantine-replay:{name}")
                    loaded += len(passing)
                if ok_ids:
                    conn.execute(
                        f"UPDATE {SCHEMA}.quarantine SET status = 'replayed', resolved_at = now() WHERE id = ANY(%s)",
                        (ok_ids,),
                    )
                if bad_ids:
                    conn.execute(
                        f"UPDATE {SCHEMA}.quarantine SET attempts = attempts + 1, last_seen = now() WHERE id = ANY(%s)",
                        (bad_ids,),
                    )
                replayed += len(ok_ids)
                failing += len(bad_ids)
        return ReplayResult(replayed, failing, loaded)
