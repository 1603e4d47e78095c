"""Encrypted segments with keys from real JCEKS keystores made by ``keytool``."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from cdc_platform.commitlog.encryption import (
    KeystoreKeyProvider,
    KeyUnavailableError,
    RawKeyProvider,
    decrypt_section,
    encrypt_section,
    key_provider_from_env,
)
from cdc_platform.commitlog.errors import EncryptionError
from cdc_platform.commitlog.model import Cell, Liveness, Mutation, PartitionUpdate, Row
from cdc_platform.commitlog.segment import DecodedEntry, SegmentDecoder
from cdc_platform.commitlog.writer import SegmentWriter
from cdc_platform.schema.model import Column, ColumnKind, Schema, Table
from cdc_platform.schema.types import native

KEYTOOL = shutil.which("keytool")


def _keystore(path: Path, alias: str, store_password: str, key_password: str) -> Path:
    if KEYTOOL is None:
        pytest.fail("keytool (Java 17) is required: .ci/run installs default-jre-headless")
    subprocess.run(
        [
            KEYTOOL,
            "-genseckey",
            "-alias",
            alias,
            "-keyalg",
            "AES",
            "-keysize",
            "128",
            "-storetype",
            "JCEKS",
            "-keystore",
            str(path),
            "-storepass",
            store_password,
            "-keypass",
            key_password,
        ],
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture(scope="module")
def keystores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("keystores")
    return {
        # Cassandra's own test configuration: alias testing:1, store and key password "cassandra".
        "same": _keystore(base / "same.jceks", "testing:1", "cassandra", "cassandra"),
        "separate": _keystore(base / "separate.jceks", "testing:1", "cassandra", "keypass99"),
    }


def _table() -> Table:
    return Table(
        "ks",
        "t",
        uuid.UUID("5a1c3940-7b2d-11ee-8c2a-1f3e5d7b9a01"),
        [
            Column("k", native("int"), ColumnKind.PARTITION_KEY),
            Column("v", native("text"), ColumnKind.REGULAR),
        ],
    )


def _mutations(table: Table, n: int) -> list[Mutation]:
    v = table.column("v")
    out = []
    for i in range(n):
        ts = 1_700_000_000_000_000 + i
        row = Row((), Liveness(ts), None, (Cell(v, ts, f"secret value {i} ".encode() * 50),))
        out.append(Mutation((PartitionUpdate(table, i.to_bytes(4, "big", signed=True), unfiltereds=(row,)),)))
    return out


def _write(tmp_path: Path, key: bytes, mutations: list[Mutation], alias: str = "testing:1") -> Path:
    writer = SegmentWriter(
        tmp_path, 1_700_000_000_123, encryption_key=key, key_alias=alias, chunk_length=4096
    )
    for i, m in enumerate(mutations):
        writer.add(m)
        if i % 7 == 6:
            writer.sync()
    writer.close()
    return writer.path


def test_keystore_key_decrypts_segment(tmp_path: Path, keystores: dict[str, Path]) -> None:
    provider = KeystoreKeyProvider(keystores["same"], "cassandra")
    key = provider.key("testing:1")
    assert len(key) == 16
    table = _table()
    mutations = _mutations(table, 30)
    path = _write(tmp_path, key, mutations)
    # The plaintext must not appear in the file.
    assert b"secret value" not in path.read_bytes()
    schema = Schema()
    schema.add_table(table)
    decoded = [
        e.mutation
        for e in SegmentDecoder(
            path, schema, key_provider=KeystoreKeyProvider(keystores["same"], "cassandra")
        )
        if isinstance(e, DecodedEntry)
    ]
    assert decoded == mutations


def test_key_password_defaults_to_store_password_and_can_differ(keystores: dict[str, Path]) -> None:
    with pytest.raises(KeyUnavailableError, match="wrong key password"):
        KeystoreKeyProvider(keystores["separate"], "cassandra").key("testing:1")
    assert len(KeystoreKeyProvider(keystores["separate"], "cassandra", "keypass99").key("testing:1")) == 16


def test_alias_lookup_is_case_insensitive_like_jceks(keystores: dict[str, Path]) -> None:
    provider = KeystoreKeyProvider(keystores["same"], "cassandra")
    assert provider.key("Testing:1") == provider.key("testing:1")


def test_keystore_errors_are_specific(tmp_path: Path, keystores: dict[str, Path]) -> None:
    with pytest.raises(KeyUnavailableError, match="wrong store password"):
        KeystoreKeyProvider(keystores["same"], "not-the-password").key("testing:1")
    with pytest.raises(KeyUnavailableError, match="was not found"):
        KeystoreKeyProvider(keystores["same"], "cassandra").key("other:2")
    with pytest.raises(KeyUnavailableError, match="does not exist"):
        KeystoreKeyProvider(tmp_path / "missing.jceks", "cassandra").key("testing:1")


def test_segment_with_unknown_alias_or_wrong_key_is_an_encryption_error(
    tmp_path: Path, keystores: dict[str, Path]
) -> None:
    table = _table()
    schema = Schema()
    schema.add_table(table)
    path = _write(tmp_path, bytes(range(16)), _mutations(table, 3), alias="rotated:7")
    with pytest.raises(EncryptionError, match="rotated:7") as info:
        list(SegmentDecoder(path, schema, key_provider=KeystoreKeyProvider(keystores["same"], "cassandra")))
    assert "1700000000123" in str(info.value)
    with pytest.raises(EncryptionError, match="does not decrypt"):
        list(SegmentDecoder(path, schema, key_provider=RawKeyProvider(bytes(16))))
    with pytest.raises(EncryptionError, match="keystore"):
        list(SegmentDecoder(path, schema))


def test_raw_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_COMMITLOG_KEY", "00112233445566778899aabbccddeeff")
    provider = key_provider_from_env()
    assert provider is not None
    assert provider.key("anything") == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert "0011" not in repr(provider)


def test_keystore_password_from_file_or_environment(
    tmp_path: Path, keystores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "keystore-password"
    secret.write_text("cassandra\n")
    from_file = key_provider_from_env(keystores["same"], password_file=secret)
    assert from_file is not None and len(from_file.key("testing:1")) == 16
    monkeypatch.setenv("CDC_KEYSTORE_PASSWORD", "cassandra")
    from_env = key_provider_from_env(keystores["same"])
    assert from_env is not None and from_env.key("testing:1") == from_file.key("testing:1")
    assert "cassandra" not in repr(from_env)
    monkeypatch.delenv("CDC_KEYSTORE_PASSWORD")
    with pytest.raises(KeyUnavailableError, match="needs a password"):
        key_provider_from_env(keystores["same"])


def test_blocks_are_independent_cbc_messages_with_the_segment_iv() -> None:
    key, iv = bytes(range(16)), bytes(range(16, 32))
    plaintext = bytes(range(256)) * 1000
    body = encrypt_section(plaintext, key, iv, chunk_length=65536)
    assert decrypt_section(body, key, iv, "AES/CBC/PKCS5Padding") == plaintext
    with pytest.raises(ValueError, match="not supported"):
        decrypt_section(body, key, iv, "AES/GCM/NoPadding")
