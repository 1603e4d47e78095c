"""The ``cdc-platform`` command line."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click

from cdc_platform.commitlog.cdc_index import CdcIndexError, cdc_index_path, read_cdc_index
from cdc_platform.commitlog.descriptor import parse_segment_name
from cdc_platform.commitlog.encryption import KeyProvider, KeyUnavailableError, key_provider_from_env
from cdc_platform.commitlog.errors import CommitLogError
from cdc_platform.commitlog.segment import Damage, DecodedEntry, SegmentDecoder, SegmentReader
from cdc_platform.schema.cql import SchemaParseError, load_schema


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _key_provider(
    keystore: str | None, password: str | None, password_file: str | None
) -> KeyProvider | None:
    try:
        return key_provider_from_env(keystore, password=password, password_file=password_file)
    except (KeyUnavailableError, OSError) as exc:
        _fail(str(exc), 2)
    return None


def _segment_order(path: str) -> tuple[int, str]:
    try:
        return (parse_segment_name(Path(path).name).segment_id, path)
    except CommitLogError:
        return (0, path)


@click.group()
@click.version_option(package_name="cdc-platform")
def main() -> None:
    """Change-data-capture from Cassandra commit logs into PostgreSQL, TimescaleDB and ClickHouse."""


@main.group()
def segment() -> None:
    """Read commit log segments."""


_keystore_options = [
    click.option(
        "--keystore", type=click.Path(dir_okay=False), help="JCEKS keystore holding the segment key."
    ),
    click.option(
        "--keystore-password",
        help="Keystore password (prefer $CDC_KEYSTORE_PASSWORD or --keystore-password-file: "
        "command-line arguments are visible to other users).",
    ),
    click.option(
        "--keystore-password-file",
        type=click.Path(dir_okay=False),
        help="File holding the keystore password.",
    ),
]


def _with_keystore(fn: Any) -> Any:
    for option in reversed(_keystore_options):
        fn = option(fn)
    return fn


@segment.command("decode")
@click.option(
    "--schema",
    "schema_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Schema CQL (DESCRIBE KEYSPACE … WITH INTERNALS output).",
)
@_with_keystore
@click.option(
    "--table",
    "tables",
    multiple=True,
    help="Only this keyspace.table (repeatable; default: all in the schema).",
)
@click.option(
    "--start",
    type=int,
    default=0,
    show_default=True,
    help="Resume position: skip entries whose position is at or before it.",
)
@click.option("--end", type=int, default=None, help="Stop at this logical position.")
@click.option("--durable", is_flag=True, help="Stop at the durable offset of the segment's _cdc.idx.")
@click.option("--node", default=None, help="Node name to record as provenance.")
@click.argument("segments", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def segment_decode(
    schema_path: str,
    keystore: str | None,
    keystore_password: str | None,
    keystore_password_file: str | None,
    tables: tuple[str, ...],
    start: int,
    end: int | None,
    durable: bool,
    node: str | None,
    segments: tuple[str, ...],
) -> None:
    """Print one JSON object per row-level change, in commit log order.

    Values are rendered as Cassandra's toJson() renders them. "position" is the entry's
    resume position (Cassandra's entryLocation); "entry_start" where the entry begins.
    Entries of tables not in the schema are skipped and counted on stderr.
    """
    from cdc_platform.changes.records import change_to_json, changes_of_update

    try:
        schema = load_schema(schema_path)
    except SchemaParseError as exc:
        _fail(str(exc), 2)
    try:
        capture = {str(i) for i in schema.select(tables or None)}
    except KeyError as exc:
        _fail(str(exc.args[0]), 2)
    keys = _key_provider(keystore, keystore_password, keystore_password_file)
    out = sys.stdout
    unknown: Counter[str] = Counter()
    skipped_crc = 0
    for path in sorted(segments, key=_segment_order):
        seg_end = end
        if durable:
            try:
                idx_path = cdc_index_path(path)
                idx = read_cdc_index(idx_path) if idx_path else None
            except (CdcIndexError, CommitLogError) as exc:
                _fail(str(exc))
            if idx is None:
                click.echo(f"{path}: no _cdc.idx (or it is empty); nothing is durable yet", err=True)
                continue
            if idx.read_to is not None:
                seg_end = idx.read_to if seg_end is None else min(seg_end, idx.read_to)
        try:
            decoder = SegmentDecoder(
                path, schema, capture=capture, start=start, end=seg_end, key_provider=keys
            )
            for item in decoder:
                if not isinstance(item, DecodedEntry):
                    continue
                for update in item.mutation.updates:
                    for change in changes_of_update(
                        update,
                        segment_id=decoder.report.segment_id,
                        position=item.entry_location,
                        entry_start=item.position,
                        node=node,
                    ):
                        out.write(change_to_json(change, update.table))
                        out.write("\n")
        except CommitLogError as exc:
            out.flush()
            _fail(str(exc))
        report = decoder.report
        unknown.update(report.unknown_tables)
        for damage in report.damaged:
            if damage.kind == "payload_crc":
                skipped_crc += 1
            click.echo(f"{path}: {damage.kind} at position {damage.position}: {damage.message}", err=True)
    for table_id, count in sorted(unknown.items()):
        click.echo(f"skipped {count} entries of table id {table_id} (not in the schema)", err=True)
    if skipped_crc:
        click.echo(f"skipped {skipped_crc} entries failing their payload CRC", err=True)


@segment.command("inspect")
@_with_keystore
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.argument("segment_path", metavar="SEGMENT", type=click.Path(exists=True, dir_okay=False))
def segment_inspect(
    keystore: str | None,
    keystore_password: str | None,
    keystore_password_file: str | None,
    as_json: bool,
    segment_path: str,
) -> None:
    """Print the header, compression/encryption, sections, entry counts per table id, idx state and damage.

    A segment whose _cdc.idx is still open is read up to its durable offset: past it Cassandra
    may be writing (a sync marker there can be half written).
    """
    import uuid

    keys = _key_provider(keystore, keystore_password, keystore_password_file)
    info: dict[str, Any] = {"file": segment_path}
    error: str | None = None
    try:
        reader = SegmentReader(segment_path, key_provider=keys)
    except CommitLogError as exc:
        _fail(str(exc))
    d = reader.descriptor
    info.update(
        version=d.version,
        segment_id=d.segment_id,
        messaging_version=d.messaging_version,
        header_length=d.header_length,
        file_length=len(reader.data),
        parameters=d.parameters,
        compression=d.compression.algorithm if d.compression and not d.encryption else None,
        encryption=(
            {"cipher": d.encryption.cipher, "key_alias": d.encryption.key_alias} if d.encryption else None
        ),
    )
    idx_info: dict[str, Any] | None = None
    durable: int | None = None  # an open index: what lies past its offset is not durable yet
    try:
        idx_path = cdc_index_path(segment_path)
        if idx_path is not None:
            idx = read_cdc_index(idx_path)
            idx_info = {
                "file": str(idx_path),
                "offset": idx.offset if idx else None,
                "completed": idx.completed if idx else None,
            }
            if idx is not None and not idx.completed:
                durable = idx.offset
    except (CdcIndexError, CommitLogError) as exc:
        idx_info = {"error": str(exc)}
    info["read_to"] = durable
    sections: list[dict[str, Any]] = []
    tables: Counter[str] = Counter()
    damage: list[dict[str, Any]] = []
    entries = 0
    last = None
    try:
        for s in reader.sections(durable):
            sections.append(
                {
                    "index": s.index,
                    "file_start": s.file_start,
                    "file_end": s.file_end,
                    "logical_start": s.logical_start,
                    "logical_end": s.logical_end,
                    "bytes": len(s.data),
                    "truncated": s.truncated,
                }
            )
        for item in reader.frames(end=durable):
            if isinstance(item, Damage):
                damage.append({"kind": item.kind, "position": item.position, "message": item.message})
                continue
            entries += 1
            last = item.entry_location
            payload = item.payload
            from cdc_platform.commitlog.vint import read_uvint

            _, pos = read_uvint(payload, 0)
            table_id = str(uuid.UUID(bytes=payload[pos : pos + 16])) if len(payload) >= pos + 16 else "?"
            tables[table_id] += 1
    except CommitLogError as exc:
        error = str(exc)
    info.update(
        sections=sections,
        entries=entries,
        entries_per_table_id=dict(tables.most_common()),
        last_entry_location=last,
        damage=damage,
        error=error,
    )
    info["cdc_index"] = idx_info
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        click.echo(
            f"segment {d.segment_id}  version {d.version} (messaging {d.messaging_version})  {segment_path}"
        )
        click.echo(
            f"  header {d.header_length} bytes, file {len(reader.data)} bytes, parameters {json.dumps(d.parameters)}"
        )
        click.echo(
            f"  compression: {info['compression'] or 'none'}   encryption: "
            f"{(d.encryption.cipher + ' alias ' + d.encryption.key_alias) if d.encryption else 'none'}"
        )
        if durable is not None:
            click.echo(
                f"  read to the durable offset {durable} of the open index (the rest is not durable yet)"
            )
        click.echo(f"  sections: {len(sections)}")
        for sec in sections:
            click.echo(
                f"    #{sec['index']}: file [{sec['file_start']}, {sec['file_end']})  logical [{sec['logical_start']}, "
                f"{sec['logical_end']})  {sec['bytes']} bytes{'  TRUNCATED' if sec['truncated'] else ''}"
            )
        click.echo(f"  entries: {entries}  last entry location: {last}")
        for tid, n in tables.most_common():
            click.echo(f"    table id {tid}: {n}")
        if idx_info is None:
            click.echo("  cdc index: none")
        elif "error" in idx_info:
            click.echo(f"  cdc index: {idx_info['error']}")
        elif idx_info["offset"] is None:
            click.echo(f"  cdc index: {idx_info['file']} (empty)")
        else:
            state = "COMPLETED" if idx_info["completed"] else "open"
            click.echo(f"  cdc index: {idx_info['file']} durable offset {idx_info['offset']}, {state}")
        for dmg in damage:
            click.echo(f"  damage: {dmg['kind']} at {dmg['position']}: {dmg['message']}")
        if error:
            click.echo(f"  error: {error}")
    if error:
        sys.exit(1)


@main.group()
def schema() -> None:
    """Table schemas for decoding."""


@schema.command("check")
@click.argument("schema_path", metavar="SCHEMA", type=click.Path(exists=True, dir_okay=False))
def schema_check(schema_path: str) -> None:
    """Parse a schema file and list its tables with their ids."""
    try:
        parsed = load_schema(schema_path)
    except SchemaParseError as exc:
        _fail(str(exc), 2)
    for table in parsed.tables:
        dropped = f", {len(table.dropped)} dropped column(s)" if table.dropped else ""
        click.echo(f"{table.qualified_name}  id {table.id}  {len(table.columns)} columns{dropped}")


@schema.command("pull")
@click.option(
    "--host", "hosts", multiple=True, default=["127.0.0.1"], show_default=True, help="Contact point."
)
@click.option("--port", default=9042, show_default=True)
@click.option("--keyspace", "keyspaces", multiple=True, required=True, help="Keyspace to fetch (repeatable).")
@click.option("--username", envvar="CDC_CASSANDRA_USERNAME", default=None, help="Or $CDC_CASSANDRA_USERNAME.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="-", show_default=True)
def schema_pull(
    hosts: tuple[str, ...], port: int, keyspaces: tuple[str, ...], username: str | None, output: str
) -> None:
    """Fetch keyspaces from system_schema and write them as DESCRIBE … WITH INTERNALS CQL.

    The password comes from $CDC_CASSANDRA_PASSWORD.
    """
    from cdc_platform.schema.live import pull_schema

    try:
        text = pull_schema(list(hosts), port, list(keyspaces), username=username)
    except Exception as exc:  # the driver raises many types; report them in one line
        _fail(f"schema pull failed: {exc}")
    if output == "-":
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


def _destination_options(fn: Any) -> Any:
    fn = click.option(
        "--postgres",
        "postgres_url",
        default=None,
        help="PostgreSQL URL (password via PGPASSWORD or ~/.pgpass).",
    )(fn)
    fn = click.option(
        "--timescaledb", "timescaledb_url", default=None, help="TimescaleDB URL for the change history."
    )(fn)
    fn = click.option(
        "--clickhouse",
        "clickhouse_url",
        default=None,
        help="clickhouse://user@host:9000/db (password via $CDC_CLICKHOUSE_PASSWORD) or chdb:///path.",
    )(fn)
    fn = click.option(
        "--schema-prefix",
        default="",
        help="Prefix of the destinations' schema (PostgreSQL) and database (ClickHouse) names.",
    )(fn)
    return fn


def _open_destinations(
    postgres_url: str | None, timescaledb_url: str | None, clickhouse_url: str | None, prefix: str = ""
) -> list[Any]:
    from cdc_platform.destinations.factory import open_destination

    out = []
    for kind, url in (
        ("postgres", postgres_url),
        ("timescaledb", timescaledb_url),
        ("clickhouse", clickhouse_url),
    ):
        if url:
            out.append(open_destination(kind, url, prefix=prefix))
    if not out:
        _fail("give at least one destination: --postgres, --timescaledb or --clickhouse", 2)
    return out


def _quality_options(fn: Any) -> Any:
    fn = click.option(
        "--quality",
        "quality_path",
        type=click.Path(exists=True, dir_okay=False),
        help="Validation rules (config/quality.yaml); without it, no validation.",
    )(fn)
    fn = click.option(
        "--masking",
        "masking_path",
        type=click.Path(exists=True, dir_okay=False),
        help="Masking rules (config/masking.yaml); keys from the environment or --secrets-dir.",
    )(fn)
    fn = click.option(
        "--secrets-dir", type=click.Path(exists=True, file_okay=False), help="Directory of masking key files."
    )(fn)
    fn = click.option(
        "--quarantine",
        "quarantine_url",
        default=None,
        help="PostgreSQL URL of the quarantine and token vault (default: --postgres).",
    )(fn)
    return fn


def _quality_and_masking(
    schema_model: Any,
    quality_path: str | None,
    masking_path: str | None,
    secrets_dir: str | None,
    vault_url: str | None,
) -> tuple[Any, Any]:
    from cdc_platform.masking import MaskingPolicy, SecretSource, TokenVault
    from cdc_platform.masking.errors import KeyUnavailableError, MaskingConfigError
    from cdc_platform.quality import QualityConfig, QualityConfigError, Validator

    validator = masking = None
    try:
        if quality_path:
            validator = Validator(schema_model, QualityConfig.from_file(quality_path))
        if masking_path:
            vault = TokenVault(vault_url) if vault_url else None
            masking = MaskingPolicy.from_file(
                masking_path, schema_model, secrets=SecretSource(secrets_dir=secrets_dir), vault=vault
            )
    except (QualityConfigError, MaskingConfigError, KeyUnavailableError) as exc:
        _fail(str(exc), 2)
    return validator, masking


@main.command("load")
@click.option("--schema", "schema_path", required=True, type=click.Path(exists=True, dir_okay=False))
@_destination_options
@_quality_options
@_with_keystore
@click.option("--table", "tables", multiple=True, help="Only this keyspace.table (repeatable).")
@click.option("--node", default=None, help="Node name recorded as provenance.")
@click.option("--durable", is_flag=True, help="Stop at each segment's _cdc.idx durable offset.")
@click.argument("segments", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def load(
    schema_path: str,
    postgres_url: str | None,
    timescaledb_url: str | None,
    clickhouse_url: str | None,
    schema_prefix: str,
    quality_path: str | None,
    masking_path: str | None,
    secrets_dir: str | None,
    quarantine_url: str | None,
    keystore: str | None,
    keystore_password: str | None,
    keystore_password_file: str | None,
    tables: tuple[str, ...],
    node: str | None,
    durable: bool,
    segments: tuple[str, ...],
) -> None:
    """Decode segments, validate, mask and apply them to destinations, without Dagster.

    Runs the same steps as the platform's assets: rows failing validation go (masked) to the
    quarantine, the rest (masked) to every destination. Applying is idempotent: running the
    same command again changes nothing.
    """
    from cdc_platform.destinations.base import DestinationError
    from cdc_platform.pipeline import decode_range, load_changes, process_changes
    from cdc_platform.quality import BatchRejectedError
    from cdc_platform.quality.quarantine import QuarantineStore

    try:
        schema_model = load_schema(schema_path)
        capture = {str(i) for i in schema_model.select(tables or None)}
    except (SchemaParseError, KeyError) as exc:
        _fail(str(exc), 2)
    keys = _key_provider(keystore, keystore_password, keystore_password_file)
    store_url = quarantine_url or postgres_url
    validator, masking = _quality_and_masking(
        schema_model, quality_path, masking_path, secrets_dir, store_url
    )
    if validator is not None and store_url is None:
        _fail("validation needs a quarantine: --quarantine or --postgres", 2)
    quarantine = QuarantineStore(store_url) if (validator is not None and store_url) else None
    destinations = _open_destinations(postgres_url, timescaledb_url, clickhouse_url, schema_prefix)
    try:
        for dest in destinations:
            for table in schema_model.tables:
                if str(table.id) in capture:
                    dest.ensure_table(table)
        for path in sorted(segments, key=_segment_order):
            end = None
            if durable:
                idx_path = cdc_index_path(path)
                idx = read_cdc_index(idx_path) if idx_path else None
                if idx is None:
                    click.echo(f"{path}: nothing durable yet", err=True)
                    continue
                end = idx.read_to
            decoded = decode_range(path, schema_model, node=node, capture=capture, end=end, key_provider=keys)
            batch = f"{decoded.segment_id}:{decoded.start}-{decoded.resume_position}"
            processed = process_changes(schema_model, decoded.changes, validator=validator, masking=masking)
            for name, p in processed.items():
                if p.quarantined and quarantine is not None:
                    quarantine.add(schema_model.table(name), p.quarantined)
                    click.echo(f"{path}: {name}: {len(p.quarantined)} rows quarantined", err=True)
            results = load_changes(
                destinations, schema_model, {n: p.accepted for n, p in processed.items()}, batch=batch
            )
            for r in results:
                click.echo(
                    f"{path}: {r.destination} {r.table}: {r.changes} changes -> {r.rows_written} rows in {r.seconds:.2f}s",
                    err=True,
                )
            for skipped in decoded.skipped:
                if skipped.reason != "not_captured":
                    click.echo(
                        f"{path}: skipped entry at {skipped.position}: {skipped.reason} {skipped.table_id or ''}",
                        err=True,
                    )
    except (CommitLogError, DestinationError, BatchRejectedError) as exc:
        _fail(masking.mask_text(str(exc)) if masking else str(exc))
    finally:
        for dest in destinations:
            dest.close()


@main.group()
def quarantine() -> None:
    """Rows rejected by validation: list, replay after a fix, discard."""


_quarantine_url = click.option(
    "--quarantine", "quarantine_url", required=True, help="PostgreSQL URL holding cdc_meta.quarantine."
)


@quarantine.command("list")
@_quarantine_url
@click.option(
    "--status", type=click.Choice(["open", "replayed", "discarded"]), default="open", show_default=True
)
@click.option("--table", default=None, help="Only this keyspace.table.")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row (with the masked change).")
def quarantine_list(quarantine_url: str, status: str, table: str | None, limit: int, as_json: bool) -> None:
    """List quarantined rows with their reasons (values are masked)."""
    from cdc_platform.quality.quarantine import QuarantineStore

    for e in QuarantineStore(quarantine_url).entries(status=status, table=table, limit=limit):
        reasons = "; ".join(
            f"{r.get('expectation')} on {r.get('column')}: {r.get('value_class')}" for r in e.reasons
        )
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "id": e.id,
                        "keyspace": e.keyspace,
                        "table": e.table,
                        "segment_id": e.segment_id,
                        "position": e.position,
                        "attempts": e.attempts,
                        "status": e.status,
                        "first_seen": e.first_seen.isoformat(),
                        "reasons": e.reasons,
                        "change": e.row_json,
                    }
                )
            )
        else:
            click.echo(
                f"{e.id}\t{e.keyspace}.{e.table}\tsegment {e.segment_id} @ {e.position}\t"
                f"attempts {e.attempts}\t{reasons}"
            )


@quarantine.command("replay")
@_quarantine_url
@click.option("--schema", "schema_path", required=True, type=click.Path(exists=True, dir_okay=False))
@_destination_options
@click.option(
    "--quality", "quality_path", type=click.Path(exists=True, dir_okay=False), help="The current rules."
)
@click.option(
    "--masking",
    "masking_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Masking rules (failures on masked columns cannot be re-checked and are not held against rows).",
)
@click.option("--secrets-dir", type=click.Path(exists=True, file_okay=False))
@click.option("--table", default=None, help="Only this keyspace.table.")
@click.option("--id", "ids", multiple=True, type=int, help="Only these quarantine ids (repeatable).")
def quarantine_replay(
    quarantine_url: str,
    schema_path: str,
    postgres_url: str | None,
    timescaledb_url: str | None,
    clickhouse_url: str | None,
    schema_prefix: str,
    quality_path: str | None,
    masking_path: str | None,
    secrets_dir: str | None,
    table: str | None,
    ids: tuple[int, ...],
) -> None:
    """Re-validate open rows with the current rules and load those that pass (idempotent)."""
    from cdc_platform.pipeline import revalidator
    from cdc_platform.quality.quarantine import QuarantineStore

    try:
        schema_model = load_schema(schema_path)
    except SchemaParseError as exc:
        _fail(str(exc), 2)
    validator, masking = _quality_and_masking(schema_model, quality_path, masking_path, secrets_dir, None)
    destinations = _open_destinations(postgres_url, timescaledb_url, clickhouse_url, schema_prefix)
    try:
        result = QuarantineStore(quarantine_url).replay(
            schema_model,
            revalidator(validator, masking),
            destinations,
            table=table,
            ids=list(ids) if ids else None,
        )
    finally:
        for dest in destinations:
            dest.close()
    click.echo(
        f"replayed {result.replayed}, still failing {result.still_failing}, loaded {result.loaded_changes} changes"
    )


@quarantine.command("discard")
@_quarantine_url
@click.argument("ids", nargs=-1, type=int, required=True)
def quarantine_discard(quarantine_url: str, ids: tuple[int, ...]) -> None:
    """Close rows without loading them."""
    from cdc_platform.quality.quarantine import QuarantineStore

    click.echo(f"discarded {QuarantineStore(quarantine_url).discard(ids)}")


@main.command("dump")
@click.option("--schema", "schema_path", required=True, type=click.Path(exists=True, dir_okay=False))
@_destination_options
@click.option("--table", "tables", multiple=True, help="Only this keyspace.table (repeatable).")
@click.option(
    "--now",
    type=int,
    default=None,
    help="Evaluate TTLs at this time (seconds since the epoch; default: now).",
)
def dump(
    schema_path: str,
    postgres_url: str | None,
    timescaledb_url: str | None,
    clickhouse_url: str | None,
    schema_prefix: str,
    tables: tuple[str, ...],
    now: int | None,
) -> None:
    """Print each table's current state in one destination as JSON (one object per table).

    Rows hold every column, values rendered like Cassandra's toJson(), in a stable order, so
    any destination can be compared with Cassandra or with another destination.
    """
    import time

    from cdc_platform.destinations.base import DestinationError
    from cdc_platform.pipeline import captured_tables, dump_table

    given = [u for u in (postgres_url, timescaledb_url, clickhouse_url) if u]
    if len(given) != 1:
        _fail("dump reads one destination: give exactly one of --postgres, --clickhouse", 2)
    if timescaledb_url:
        _fail(
            "TimescaleDB holds the change history, not current state: dump --postgres or --clickhouse "
            "(or read the history table <table>$history)",
            2,
        )
    try:
        schema_model = load_schema(schema_path)
        selected = captured_tables(schema_model, tables or None)
    except (SchemaParseError, KeyError) as exc:
        _fail(str(exc), 2)
    (dest,) = _open_destinations(postgres_url, timescaledb_url, clickhouse_url, schema_prefix)
    at = now if now is not None else int(time.time())
    try:
        for table in selected:
            click.echo(dump_table(dest, table, at))
    except DestinationError as exc:
        _fail(str(exc))
    finally:
        dest.close()


@main.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".cdc-demo",
    show_default=True,
    help="Everything the demo makes (recreated on each run): cdc_raw, databases, instance, keys.",
)
@click.option("--mutations", default=3000, show_default=True, help="CQL statements written to each node.")
@click.option("--waves", default=4, show_default=True, help="Written in this many waves, loaded after each.")
@click.option("--seed", default=7, show_default=True, help="Workload random seed.")
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Where quality.yaml and masking.yaml are (default: the checkout's config/).",
)
@click.option("--ui", is_flag=True, help="Then start the Dagster UI on the same instance.")
@click.option("--ui-only", is_flag=True, help="Start the UI on the last demo's instance, without a new run.")
@click.option("--port", default=3000, show_default=True, help="Port of the Dagster UI.")
def demo(
    workdir: Path,
    mutations: int,
    waves: int,
    seed: int,
    config_dir: Path | None,
    ui: bool,
    ui_only: bool,
    port: int,
) -> None:
    """Run the whole platform on an embedded default, with no external servers.

    Embedded PostgreSQL (destination, TimescaleDB history fallback, quarantine and the Dagster
    instance), chdb for ClickHouse; three simulated nodes write a shop workload with PII into
    their cdc_raw directories; the Dagster sensors and runs decode, validate, mask and load
    it; then a summary. Exit status 1 if a run or an error-severity check failed.
    """
    from cdc_platform import demo as d

    if mutations < 1 or waves < 1 or waves > mutations:
        raise click.UsageError("need 1 <= --waves <= --mutations")
    try:
        if ui_only:
            setup = d.reopen(workdir)
            sys.exit(d.serve_ui(setup, port=port, echo=click.echo))
        setup = d.prepare(workdir, config_dir or d.CONFIG_DIR)
        click.echo(
            f"cdc_platform demo: {mutations} mutations on 3 nodes in {waves} waves; work directory {setup.workdir}"
        )
        click.echo(
            "  embedded PostgreSQL (databases cdc, dagster), chdb, TimescaleDB fallback "
            "(history tables in PostgreSQL, native partitioning)"
        )
        summary = d.run(setup, mutations=mutations, waves=waves, seed=seed, echo=click.echo)
    except d.DemoError as exc:
        _fail(str(exc))
    click.echo(d.render(summary, setup))
    failed = summary.failed_runs or summary.failed_errors
    if ui:
        d.serve_ui(setup, port=port, echo=click.echo)
    if failed:
        sys.exit(1)


def _register_groups() -> None:
    from cdc_platform.masking.cli import masking

    main.add_command(masking)


_register_groups()


if __name__ == "__main__":
    main()
