"""verify(): nothing found in properly masked destinations; planted plaintexts and seeds found."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cdc_platform.changes.records import RowChange, change_to_json, changes_of_update
from cdc_platform.destinations.postgres.sink import PostgresDestination
from cdc_platform.masking import MaskingPolicy, MemoryTokenVault, SecretSource, VerifyReport, verify
from cdc_platform.masking.verify import VerifyError
from cdc_platform.schema.model import Schema
from cdc_platform.workload import ShopWorkload
from cdc_platform_tests.conftest import REPO_ROOT

ENV = {
    "CDC_MASK_KEY_2026": "verify-test-key-2026-0123456789",
    "CDC_MASK_KEY_2025": "verify-test-key-2025-0123456789",
    "CDC_VAULT_KEY_2026": "verify-test-vault-0123456789",
}
PLANTED = {
    "email": "planted.person@example.org",
    "full_name": "Planted Person",
    "phone": "+49 30 5551234",
    "street": "12 Planted Street",
    "seed": "seed-value-nobody-masked",
}


def _policy(schema: Schema) -> MaskingPolicy:
    return MaskingPolicy.from_file(
        REPO_ROOT / "config" / "masking.yaml",
        schema,
        secrets=SecretSource(environ=ENV),
        vault=MemoryTokenVault(),
    )


def _changes(workload: ShopWorkload, count: int) -> dict[str, list[RowChange]]:
    out: dict[str, list[RowChange]] = {}
    for mutation in workload.mutations(count):
        for update in mutation.updates:
            out.setdefault(update.table.qualified_name, []).extend(changes_of_update(update))
    return out


@pytest.fixture(scope="module")
def shop() -> tuple[ShopWorkload, MaskingPolicy, dict[str, list[RowChange]]]:
    workload = ShopWorkload(seed=21)
    changes = _changes(workload, 400)
    policy = _policy(workload.schema)
    masked = {name: policy.mask(workload.schema.table(name), chs).changes for name, chs in changes.items()}
    return workload, policy, masked


@pytest.fixture()
def loaded(
    postgres_url: str,
    schema_prefix: str,
    shop: tuple[ShopWorkload, MaskingPolicy, dict[str, list[RowChange]]],
) -> Iterator[str]:
    workload, _, masked = shop
    dest = PostgresDestination(postgres_url, schema_prefix=schema_prefix)
    try:
        for name, changes in masked.items():
            table = workload.schema.table(name)
            dest.ensure_table(table)
            dest.apply(table, changes, batch="verify-test")
    finally:
        dest.close()
    yield f"{schema_prefix}shop"


def _leaks(report: VerifyReport, plaintexts: Any) -> list[str]:
    shown = report.render() + json.dumps(report.as_dict()) + repr(report)
    return [p for p in plaintexts if p in shown]


def test_properly_masked_data_gives_no_finding(
    postgres_url: str, schema_prefix: str, loaded: str, shop: tuple[ShopWorkload, MaskingPolicy, Any]
) -> None:
    workload, policy, _ = shop
    report = verify(
        policy,
        workload.schema,
        postgres_url=postgres_url,
        seeds=workload.pii_seen,
        schema_prefix=schema_prefix,
    )
    assert report.ok, report.render()
    assert report.scanned[f"postgres {loaded}.customers"] > 20
    assert report.scanned[f"postgres {loaded}.orders"] > 20
    assert f"postgres {loaded}.inventory$static" in report.scanned


def _execute(url: str, statement: str, *params: Any) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(statement, params)


def test_planted_plaintexts_and_seeds_are_found(
    postgres_url: str, schema_prefix: str, loaded: str, shop: tuple[ShopWorkload, MaskingPolicy, Any]
) -> None:
    workload, policy, _ = shop
    ks = loaded
    one = f'(SELECT _cdc_key FROM "{ks}".customers WHERE email IS NOT NULL ORDER BY _cdc_key LIMIT 1)'
    _execute(postgres_url, f'UPDATE "{ks}".customers SET email = %s WHERE _cdc_key = {one}', PLANTED["email"])
    _execute(
        postgres_url,
        f'UPDATE "{ks}".customers SET full_name = %s WHERE _cdc_key = {one}',
        PLANTED["full_name"],
    )
    _execute(postgres_url, f'UPDATE "{ks}".customers SET phone = %s WHERE _cdc_key = {one}', PLANTED["phone"])
    _execute(postgres_url, f"UPDATE \"{ks}\".customers SET birth_date = '1980-05-17' WHERE _cdc_key = {one}")
    _execute(postgres_url, f"UPDATE \"{ks}\".customers SET ssn = '123-45-6789' WHERE _cdc_key = {one}")
    _execute(
        postgres_url,
        f"UPDATE \"{ks}\".customers SET address = jsonb_set(address, '{{street}}', to_jsonb(%s::text)) "
        f'WHERE _cdc_key = (SELECT _cdc_key FROM "{ks}".customers WHERE address IS NOT NULL ORDER BY _cdc_key LIMIT 1)',
        PLANTED["street"],
    )
    _execute(
        postgres_url,
        f"UPDATE \"{ks}\".sessions SET ip = '10.1.2.3' WHERE _cdc_key = "
        f'(SELECT _cdc_key FROM "{ks}".sessions ORDER BY _cdc_key LIMIT 1)',
    )
    # A seed in a column no rule covers, and in a bytea column.
    _execute(
        postgres_url,
        f'UPDATE "{ks}"."inventory$static" SET sku_name = %s '
        f'WHERE _cdc_pk = (SELECT _cdc_pk FROM "{ks}"."inventory$static" ORDER BY _cdc_pk LIMIT 1)',
        "Product with " + PLANTED["seed"],
    )
    _execute(
        postgres_url,
        f'UPDATE "{ks}".order_events SET payload = %s WHERE _cdc_key = (SELECT _cdc_key FROM "{ks}".order_events ORDER BY _cdc_key LIMIT 1)',
        b"\x00\x01" + PLANTED["email"].encode(),
    )
    # A change history (TimescaleDB destination) holding a plaintext in its cells.
    _execute(postgres_url, f'CREATE TABLE "{ks}"."customers$history" (_cdc_values jsonb)')
    _execute(
        postgres_url,
        f'INSERT INTO "{ks}"."customers$history" VALUES (%s::jsonb)',
        json.dumps({"email": {"value": PLANTED["email"], "deleted": False}, "loyalty_points": {"value": 3}}),
    )
    seeds = [PLANTED["seed"], PLANTED["email"]]
    report = verify(
        policy, workload.schema, postgres_url=postgres_url, seeds=seeds, schema_prefix=schema_prefix
    )
    found = {(f.table.split(".", 1)[1], f.column, f.reason): f.count for f in report.findings}
    assert found == {
        ("customers", "email", "hmac_sha256: not an hmac_sha256 value (h1:<key id>:<64 hex>)"): 1,
        ("customers", "full_name", "tokenize: not a token (tok_<32 hex>)"): 1,
        ("customers", "phone", "partial: partial value with unmasked characters"): 1,
        ("customers", "birth_date", "generalize: date not on the first day of the month"): 1,
        ("customers", "ssn", "redact: not redacted (expected null)"): 1,
        ("customers", "address -> address.street", "redact: not redacted (expected the fixed text)"): 1,
        ("customers", "email", "contains plaintext seed #1"): 1,
        ("sessions", "ip", "generalize: address with host bits (not generalized to its network)"): 1,
        ("inventory$static", "sku_name", "contains plaintext seed #0"): 1,
        ("order_events", "payload", "contains plaintext seed #1"): 1,
        ("customers$history", "email", "hmac_sha256: not an hmac_sha256 value (h1:<key id>:<64 hex>)"): 1,
        ("customers$history", "_cdc_values", "contains plaintext seed #1"): 1,
    }
    assert not report.ok
    assert all(s.startswith("sha256:") for f in report.findings for s in f.samples)
    assert _leaks(report, [*PLANTED.values(), "123-45-6789", "10.1.2.3", "1980-05-17"]) == []


def test_the_quarantine_is_checked(database: str, shop: tuple[ShopWorkload, MaskingPolicy, Any]) -> None:
    workload, policy, masked = shop
    schema = workload.schema
    customers = schema.table("shop.customers")
    plain = ShopWorkload(seed=99)
    plain_changes = _changes(plain, 60)["shop.customers"]
    dirty = next(c for c in plain_changes if any(cell.column == "email" for cell in c.cells))
    clean = [c for c in masked["shop.customers"] if c.cells][:20]
    with psycopg.connect(database) as conn:
        conn.execute("CREATE SCHEMA cdc_meta")
        conn.execute("CREATE TABLE cdc_meta.quarantine (id serial, reason text, row_json jsonb)")
        for change in [*clean, dirty]:
            conn.execute(
                "INSERT INTO cdc_meta.quarantine (reason, row_json) VALUES ('rule', %s::jsonb)",
                (change_to_json(change, customers),),
            )
        # A row quarantined as column → value, naming its table in the document.
        conn.execute(
            "INSERT INTO cdc_meta.quarantine (reason, row_json) VALUES ('rule', %s::jsonb)",
            (json.dumps({"keyspace": "shop", "table": "orders", "shipping": {"street": PLANTED["street"]}}),),
        )
    report = verify(policy, schema, quarantine_url=database, seeds=plain.pii_seen)
    reasons = {(f.location, f.table, f.column, f.reason) for f in report.findings}
    email = next(cell.value for cell in dirty.cells if cell.column == "email")
    assert (
        "quarantine",
        "cdc_meta.quarantine",
        "email",
        "hmac_sha256: not an hmac_sha256 value (h1:<key id>:<64 hex>)",
    ) in reasons
    assert (
        "quarantine",
        "cdc_meta.quarantine",
        "shipping -> shipping.street",
        "redact: not redacted (expected the fixed text)",
    ) in reasons
    assert any(r[2] == "row_json" and r[3].startswith("contains plaintext seed") for r in reasons)
    assert report.scanned == {"quarantine cdc_meta.quarantine": 22}
    assert _leaks(report, [email, PLANTED["street"]]) == []
    # The clean rows alone: nothing.
    with psycopg.connect(database) as conn:
        conn.execute("DELETE FROM cdc_meta.quarantine WHERE id > %s", (len(clean),))
    assert verify(policy, schema, quarantine_url=database, seeds=plain.pii_seen | workload.pii_seen).ok


class _DictReader:
    """A destination held in memory: what a ClickHouse reader implements."""

    location = "memory"

    def __init__(self, tables: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        self.data = tables

    def tables(self, namespace: str) -> list[str]:
        return sorted(t for ns, t in self.data if ns == namespace)

    def columns(self, namespace: str, table: str) -> dict[str, str]:
        rows = self.data[(namespace, table)]
        return {c: "text" if isinstance(v, str) else "other" for c, v in rows[0].items()}

    def rows(self, namespace: str, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        for row in self.data[(namespace, table)]:
            yield tuple(row[c] for c in columns)

    def close(self) -> None:
        pass


def test_other_destinations_go_through_a_reader(shop: tuple[ShopWorkload, MaskingPolicy, Any]) -> None:
    """Any engine with a DestinationReader (tables, columns, rows, close) is scanned the same way."""
    workload, policy, _ = shop
    reader = _DictReader(
        {("shop", "sessions"): [{"session_id": "x", "ip": "10.1.2.3"}, {"session_id": "y", "ip": "10.1.2.0"}]}
    )
    report = verify(policy, workload.schema, readers=[reader])
    assert [(f.location, f.table, f.column, f.count) for f in report.findings] == [
        ("memory", "shop.sessions", "ip", 1)
    ]
    with pytest.raises(VerifyError, match="clickhouse"):
        verify(policy, workload.schema, clickhouse_url="mysql://localhost")


def test_clickhouse_is_scanned_like_postgres(tmp_path: Path) -> None:
    """On embedded chdb: named tuples for UDTs, Map, Array, String values as bytes."""
    from cdc_platform.destinations.clickhouse.sink import ClickHouseDestination
    from cdc_platform_tests.masking import cases

    url = f"chdb://{tmp_path / 'chdb'}"
    p = cases.policy()
    dest = ClickHouseDestination(url, database_prefix="m_")
    try:
        dest.ensure_table(cases.PEOPLE)
        dest.apply(cases.PEOPLE, p.mask(cases.PEOPLE, cases.full_row() + cases.element_removal()).changes)
        seeds = [v for k, v in cases.PLAIN.items() if k != "tenant"]
        report = verify(p, cases.SCHEMA, clickhouse_url=url, seeds=seeds, schema_prefix="m_")
        assert report.ok, report.render()
        assert report.scanned["clickhouse m_pii.people"] == 1
        dest.apply(cases.PEOPLE, cases.full_row(ts=5_000_000))
    finally:
        dest.close()
    report = verify(p, cases.SCHEMA, clickhouse_url=url, seeds=[cases.PLAIN["note"]], schema_prefix="m_")
    assert {f.column.split(" -> ")[-1] for f in report.findings if "seed" not in f.reason} == set(
        p.masked_columns(cases.PEOPLE)
    )
    assert {f.column for f in report.findings if "seed" in f.reason} == {
        "note",
        "_cdc_v:note",
        "raw",
        "_cdc_v:raw",
    }
    assert _leaks(report, set(cases.PLAIN.values()) - {"acme"}) == []


def test_the_verify_command(
    postgres_url: str,
    schema_prefix: str,
    loaded: str,
    shop: tuple[ShopWorkload, MaskingPolicy, Any],
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from cdc_platform.masking.cli import masking
    from cdc_platform.workload import SHOP_SCHEMA_CQL

    workload, _, _ = shop
    (tmp_path / "shop.cql").write_text(SHOP_SCHEMA_CQL)
    (tmp_path / "seeds.txt").write_text("\n".join(sorted(workload.pii_seen)) + "\n")
    args = ["--schema", str(tmp_path / "shop.cql"), "--config", str(REPO_ROOT / "config" / "masking.yaml")]
    runner = CliRunner(env=ENV)
    checked = runner.invoke(masking, ["check", *args])
    assert checked.exit_code == 0, checked.output
    assert "shop.customers.email: hmac_sha256 (key mask-2026)" in checked.output.splitlines()
    verify_args = ["verify", *args, "--postgres", postgres_url, "--schema-prefix", schema_prefix]
    clean = runner.invoke(masking, [*verify_args, "--seeds", str(tmp_path / "seeds.txt"), "--json"])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.output)["ok"] is True
    victim = sorted(p for p in workload.pii_seen if "@" in p)[0]
    _execute(
        postgres_url,
        f'UPDATE "{loaded}".customers SET email = %s WHERE _cdc_key = (SELECT min(_cdc_key) FROM "{loaded}".customers)',
        victim,
    )
    dirty = runner.invoke(masking, [*verify_args, "--seeds", str(tmp_path / "seeds.txt")])
    assert dirty.exit_code == 1
    assert f"postgres {loaded}.customers email: contains plaintext seed" in dirty.output
    assert victim not in dirty.output
    missing = CliRunner(env={}).invoke(masking, verify_args)
    assert missing.exit_code == 2 and "CDC_MASK_KEY_2026 is not set" in missing.output


def test_every_kind_of_masked_value_verifies_clean(postgres_url: str, schema_prefix: str) -> None:
    """UDTs (frozen and not), sets, maps, tuples, numbers, dates, addresses: as PostgreSQL holds them."""
    from cdc_platform_tests.masking import cases

    p = cases.policy()
    masked = p.mask(cases.PEOPLE, cases.full_row() + cases.element_removal()).changes
    dest = PostgresDestination(postgres_url, schema_prefix=schema_prefix)
    try:
        dest.ensure_table(cases.PEOPLE)
        dest.apply(cases.PEOPLE, masked)
    finally:
        dest.close()
    seeds = [v for k, v in cases.PLAIN.items() if k != "tenant"]
    report = verify(p, cases.SCHEMA, postgres_url=postgres_url, seeds=seeds, schema_prefix=schema_prefix)
    assert report.ok, report.render()
    assert report.scanned[f"postgres {schema_prefix}pii.people"] == 1
    # The same values unmasked: every rule finds its column.
    plain = cases.full_row(ts=5_000_000)
    dest = PostgresDestination(postgres_url, schema_prefix=schema_prefix)
    try:
        dest.apply(cases.PEOPLE, plain)
    finally:
        dest.close()
    report = verify(p, cases.SCHEMA, postgres_url=postgres_url, schema_prefix=schema_prefix)
    columns = {f.column.split(" -> ")[-1] for f in report.findings}
    assert columns == set(p.masked_columns(cases.PEOPLE))
