"""The token vault on a real PostgreSQL: idempotent writes, detokenize only with the vault key."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from cdc_platform.masking import SecretKey, TokenVault, VaultKeyError
from cdc_platform.masking.vault import VaultCipher
from cdc_platform_tests.masking.cases import PEOPLE, PLAIN, VK, config, full_row, policy


@pytest.fixture()
def vault(postgres_url: str, schema_prefix: str) -> Iterator[TokenVault]:
    v = TokenVault(postgres_url, schema=f"{schema_prefix}meta")
    yield v
    v.close()


def _rows(url: str, schema: str) -> list[tuple[str, str, bytes, bytes]]:
    with psycopg.connect(url) as conn:
        return [
            (r[0], r[1], bytes(r[2]), bytes(r[3]))
            for r in conn.execute(
                sql.SQL("SELECT token, key_id, nonce, ciphertext FROM {} ORDER BY token").format(
                    sql.Identifier(schema, "token_vault")
                )
            )
        ]


def test_masked_tokens_detokenize_with_the_vault_key_only(vault: TokenVault, postgres_url: str) -> None:
    p = policy(vault=vault)
    row = p.mask(PEOPLE, full_row()).changes[1]
    token = next(c.value for c in row.cells if c.column == "name")
    ((map_token, _),) = next(c.value for c in row.cells if c.column == "frozen_phones")
    key = SecretKey("vk", VK.encode(), "test")
    assert vault.detokenize([token, map_token, "tok_" + "0" * 32, "not-a-token"], key) == {
        token: PLAIN["name"],
        map_token: PLAIN["frozen_label"],
    }
    with pytest.raises(VaultKeyError) as err:
        vault.detokenize([token], SecretKey("vk", b"another-key-0123456789abcdef", "test"))
    assert PLAIN["name"] not in str(err.value)
    rows = _rows(postgres_url, vault.schema)
    assert {r[0] for r in rows} == {token, map_token} and {r[1] for r in rows} == {"vk"}
    stored = b"".join(r[0].encode() + r[2] + r[3] for r in rows)
    assert PLAIN["name"].encode() not in stored and PLAIN["frozen_label"].encode() not in stored


def test_vault_writes_are_idempotent(vault: TokenVault, postgres_url: str) -> None:
    cipher = VaultCipher(SecretKey("vk", VK.encode(), "test"))
    token = cipher.token("someone@example.org")
    assert vault.store([cipher.seal(token, "someone@example.org")]) == 1
    first = _rows(postgres_url, vault.schema)
    # A rerun, another replica, another process: sealed again (a new nonce), the first entry kept.
    again = TokenVault(vault.url, schema=vault.schema)
    assert again.store([cipher.seal(token, "someone@example.org")]) == 0
    again.close()
    assert _rows(postgres_url, vault.schema) == first
    # Policies in two processes converge on the same tokens.
    a = policy(config({"name": "tokenize"}), vault=vault).mask(PEOPLE, full_row()).changes
    b = policy(config({"name": "tokenize"}), vault=vault).mask(PEOPLE, full_row()).changes
    assert a == b
    assert len(_rows(postgres_url, vault.schema)) == 2
    assert vault.url not in repr(vault)
