"""Key material and plaintexts never show in repr, str, exceptions or logs."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from cdc_platform.masking import KeyUnavailableError, MaskingError, MaskingPolicy, SecretKey, SecretSource
from cdc_platform.schema.values import InvalidValue
from cdc_platform_tests.masking.cases import (
    ENV,
    KEY_MATERIAL,
    PEOPLE,
    PLAIN,
    SCHEMA,
    config,
    full_row,
    policy,
)


def test_secrets_from_environment_and_files(tmp_path: Path) -> None:
    (tmp_path / "k.key").write_text("hex:" + "ab" * 20 + "\n")
    (tmp_path / "named").write_text("base64:" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVg==")
    src = SecretSource(
        environ={"V": "  from-the-environment-123  ", "CDC_MASK_KEY_MY_KEY_1": "d" * 16}, secrets_dir=tmp_path
    )
    assert src.resolve("a", {"env": "V"}).material == b"from-the-environment-123"
    assert src.resolve("b", {"file": "k.key"}).material == bytes.fromhex("ab" * 20)
    assert src.resolve("named").material == b"ABCDEFGHIJKLMNOPQRSTUV"  # <secrets_dir>/<id>
    assert src.resolve("my-key.1").material == b"d" * 16  # $CDC_MASK_KEY_<ID>
    with pytest.raises(KeyUnavailableError, match=r"cannot read .*missing\.key"):
        src.resolve("c", {"file": "missing.key"})
    with pytest.raises(KeyUnavailableError, match="is not valid hex text") as err:
        SecretSource(environ={"V": "hex:zz-not-hex-secret-zz"}).resolve("d", {"env": "V"})
    assert "not-hex-secret" not in str(err.value)
    with pytest.raises(KeyUnavailableError, match=r"set \$CDC_MASK_KEY_NOPE"):
        SecretSource(environ={}).resolve("nope")


def test_file_sources_are_relative_to_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "k1.key").write_text("file-key-material-0123456789")
    cfg = tmp_path / "masking.yaml"
    cfg.write_text(
        "keys:\n  k1: {file: secrets/k1.key}\n"
        "tables:\n  pii.people:\n    note: {algorithm: hmac_sha256, key: k1}\n"
    )
    p = MaskingPolicy.from_file(cfg, SCHEMA, secrets=SecretSource(environ={}))
    assert p.rules("pii.people")[0].masker.mask("x").startswith("h1:k1:")


def test_a_key_prints_its_id_and_source_only() -> None:
    key = SecretKey("k1", b"super-secret-material-xyz", "$T_K1")
    for text in (repr(key), str(key), f"{key}", repr([key]), repr({"k": key})):
        assert "super-secret" not in text and "k1" in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)


def test_policy_reprs_and_rules_hold_no_material() -> None:
    p = policy()
    shown = repr(p) + repr(p.rules("pii.people")) + repr(p.vault)
    assert not any(m in shown for m in KEY_MATERIAL)
    with pytest.raises(TypeError, match="holds key material"):
        pickle.dumps(p)


def test_masking_logs_and_errors_carry_neither_keys_nor_plaintexts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    p = policy()
    p.mask(PEOPLE, full_row())
    bad = full_row()[1]
    # A value of the wrong shape (an int where text is expected) fails the batch, naming the column.
    import dataclasses

    broken = dataclasses.replace(bad, cells=(bad.cells[0]._replace(column="code", value=12345678),))
    with pytest.raises(MaskingError) as err:
        p.mask(PEOPLE, [broken])
    assert str(err.value) == "pii.people.code: partial expects a text value, got int"
    with pytest.raises(KeyUnavailableError) as err2:
        policy(env={**ENV, "T_VK": "short-vk"})
    logged = caplog.text + str(err.value) + str(err2.value)
    assert "masked pii.people:" in caplog.text  # the debug line is there, with counts only
    assert not any(m in logged for m in KEY_MATERIAL)
    assert "short-vk" not in logged
    assert not any(v in logged for v in PLAIN.values() if v != "acme")
    assert "12345678" not in logged


def test_undecodable_bytes_never_appear_in_errors_or_audit() -> None:
    p = policy(config({"note": "redact"}))
    row = full_row()[1]
    secret = "raw-bytes-" + PLAIN["note"]
    cell = row.cells[0]._replace(
        column="note", value=InvalidValue(secret.encode(), "text is not valid UTF-8 at byte 3")
    )
    import dataclasses

    result = p.mask(PEOPLE, [dataclasses.replace(row, cells=(cell,))])
    assert result.changes[0].cells[0].value is None and result.changes[0].cells[0].deleted
    assert secret not in repr(result)
