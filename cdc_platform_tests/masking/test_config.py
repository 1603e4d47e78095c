"""Configuration: the example file loads; mistakes are errors naming the file, table and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdc_platform.masking import KeyUnavailableError, MaskingConfigError, MaskingPolicy, SecretSource
from cdc_platform.schema.cql import parse_schema
from cdc_platform.workload import shop_schema
from cdc_platform_tests.conftest import REPO_ROOT
from cdc_platform_tests.masking.cases import ENV, KEY_MATERIAL, SCHEMA, config, policy

EXAMPLE = REPO_ROOT / "config" / "masking.yaml"
SHOP_ENV = {
    "CDC_MASK_KEY_2026": "example-key-2026-0123456789",
    "CDC_MASK_KEY_2025": "hex:" + "5a" * 32,
    "CDC_VAULT_KEY_2026": "base64:" + "dmF1bHQta2V5LTIwMjYtMDEyMzQ1Njc4OQ==",
}


def test_the_example_configuration_loads_against_the_shop_schema() -> None:
    p = MaskingPolicy.from_file(EXAMPLE, shop_schema(), secrets=SecretSource(environ=SHOP_ENV))
    assert p.tables == ["shop.customers", "shop.order_events", "shop.orders", "shop.sessions"]
    assert p.masked_columns("shop.customers") == {
        "email": "hmac_sha256",
        "full_name": "tokenize",
        "phone": "partial",
        "ssn": "redact",
        "birth_date": "generalize",
        "address.street": "redact",
        "address.postcode": "partial",
    }
    assert p.masked_columns(shop_schema().table("shop.inventory")) == {}
    assert "example-key" not in repr(p)


def _error(data: dict[str, Any], **kwargs: Any) -> MaskingConfigError:
    with pytest.raises(MaskingConfigError) as err:
        policy(data, **kwargs)
    return err.value


def rules(**by_path: Any) -> dict[str, Any]:
    return config({k.replace("__", "."): v for k, v in by_path.items()})


@pytest.mark.parametrize(
    ("data", "column", "words"),
    [
        (config(tables={"pii.nobody": {}}), None, "unknown table 'pii.nobody'"),
        (rules(emial={"algorithm": "sha256"}), "emial", "unknown column 'emial'"),
        (rules(contact__mail={"algorithm": "sha256"}), "contact.mail", "UDT contact has no field 'mail'"),
        (rules(note__x={"algorithm": "sha256"}), "note.x", "text has no fields"),
        ({**rules(), "tables": {"pii.people": {"email[]": "sha256"}}}, "email[]", "text has no elements"),
        (
            rules(emails={"algorithm": "hmac_sha256"}),
            "emails",
            "applies to text/ascii/varchar values, not list<text>",
        ),
        (rules(born={"algorithm": "hmac_sha256"}), "born", "not date"),
        (
            rules(note={"algorithm": "generalize"}),
            "note",
            "generalize applies to date, timestamp, numbers and inet",
        ),
        (rules(score={"algorithm": "redact", "value": "x"}), "score", "fixed text applies to text"),
        (rules(raw={"algorithm": "partial"}), "raw", "not blob"),
        (rules(score={"algorithm": "generalize"}), "score", "needs an integer width"),
        (rules(note={"algorithm": "scramble"}), "note", "unknown algorithm 'scramble'"),
        (rules(note={"algorithm": "redact", "vaule": "x"}), "note", "redact has no parameter vaule"),
        (
            rules(note={"algorithm": "hmac_sha256", "key": "k9"}),
            "note",
            "key 'k9' is not declared under keys",
        ),
        (rules(note="redact", note__x="redact"), "note.x", "text has no fields"),
    ],
)
def test_mistakes_name_the_file_table_and_column(
    data: dict[str, Any], column: str | None, words: str
) -> None:
    err = _error(data)
    assert words in str(err)
    assert err.source == "<dict>"
    if column is not None:
        assert err.table == "pii.people" and err.column == column
        assert str(err).startswith(f"<dict>: pii.people.{column}: ")


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("email", {"algorithm": "partial"}),  # partition key
        ("handle", {"algorithm": "redact", "value": "x"}),  # clustering
        ("phones{}", {"algorithm": "redact", "value": "x"}),  # map keys
        ("aliases[]", {"algorithm": "partial"}),  # non-frozen set elements are cell paths
        ("frozen_phones{}", {"algorithm": "partial"}),  # frozen map keys
    ],
)
def test_values_identifying_rows_or_elements_need_an_injective_algorithm(
    path: str, rule: dict[str, Any]
) -> None:
    err = _error(config({path: rule}))
    assert "would merge distinct keys" in str(err) and err.column == path


def test_collection_elements_cannot_be_nulled_but_non_frozen_elements_and_fields_can() -> None:
    err = _error(config({"frozen_aliases[]": {"algorithm": "redact"}}))
    assert "collection elements cannot be null" in str(err)
    ok = policy(
        config(
            {"emails[]": "redact", "history[].0": "redact", "phones[]": "redact", "contact.email": "redact"}
        )
    )
    assert ok.masked_columns("pii.people")["emails[]"] == "redact"
    assert policy(config({"frozen_aliases[]": "partial"})).masked_columns("pii.people") == {
        "frozen_aliases[]": "partial"
    }


def test_overlapping_rules_are_rejected() -> None:
    err = _error(config({"contact": "redact", "contact.email": "sha256"}))
    assert "overlaps the rule on contact" in str(err)


def test_counter_columns_cannot_be_masked() -> None:
    schema = parse_schema(
        "CREATE KEYSPACE c WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};\n"
        "CREATE TABLE c.hits (k text PRIMARY KEY, n counter) WITH ID = 00000000-0000-1000-8000-0000000000c1;"
    )
    with pytest.raises(MaskingConfigError, match="counter columns cannot be masked"):
        MaskingPolicy.from_dict({"tables": {"c.hits": {"n": "redact"}}}, schema)


def test_unknown_sections_and_settings() -> None:
    assert "unknown section tabels" in str(_error({**config(), "tabels": {}}))
    assert "hmac has no setting current" in str(_error(config(hmac={"current": "k1"})))


def test_key_material_in_the_configuration_is_refused_without_echoing_it() -> None:
    material = "pasted-secret-material-0123456789"
    for spec in (material, {"value": material}, {"env": "T_K1", "file": "x"}):
        err = _error(config(keys={"k1": spec, "k0": {"env": "T_K0"}, "vk": {"env": "T_VK"}}))
        assert material not in str(err)
        assert "keys.k1" in str(err)


def test_an_unavailable_key_names_its_source_but_no_material() -> None:
    with pytest.raises(KeyUnavailableError) as err:
        policy(env={k: v for k, v in ENV.items() if k != "T_K1"})
    message = str(err.value)
    assert "$T_K1 is not set" in message and "<dict>" in message
    assert not any(m in message for m in KEY_MATERIAL)
    with pytest.raises(KeyUnavailableError, match="is 5 bytes; at least 16") as short:
        policy(env={**ENV, "T_K1": "short"})
    assert "short" not in str(short.value).replace("is 5 bytes", "")


def test_from_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "masking.yaml"
    bad.write_text("tables:\n  pii.people:\n    emial: {algorithm: sha256}\n")
    with pytest.raises(MaskingConfigError) as err:
        MaskingPolicy.from_file(bad, SCHEMA, secrets=SecretSource(environ=ENV))
    assert str(err.value).startswith(f"{bad}: pii.people.emial: unknown column")
    bad.write_text("tables: [unclosed\n")
    with pytest.raises(MaskingConfigError, match="not valid YAML") as err2:
        MaskingPolicy.from_file(bad, SCHEMA)
    assert err2.value.source == str(bad)


def test_quoted_names_and_shorthand_rules() -> None:
    p = policy(config({'contact."Nick"': "sha256", "note": "redact"}))
    assert p.masked_columns("pii.people") == {"contact.Nick": "sha256", "note": "redact"}
