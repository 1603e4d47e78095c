"""The token vault: reversible tokens for the ``tokenize`` algorithm.

A token is ``tok_`` + 32 hex digits of an HMAC-SHA256 of the plaintext under a subkey of the
vault key, so the same plaintext always gives the same token (replays and replica copies
converge, joins on tokens work) and nobody without the key can compute or invert it. The
vault keeps, per token, the plaintext sealed with AES-256-GCM under another subkey of the
vault key (random 96-bit nonce; the token and key id are authenticated data), so reading
the vault table gives nothing without the key either. Writes are ``INSERT … ON CONFLICT DO
NOTHING``: storing a token twice (a rerun, another replica's copy) keeps the first entry,
which opens to the same plaintext.

Table ``<schema>.token_vault`` (schema ``cdc_meta`` by default)::

    token text PRIMARY KEY, key_id text, nonce bytea, ciphertext bytea, created_at timestamptz
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cdc_platform.masking.errors import VaultError, VaultKeyError
from cdc_platform.masking.secrets import SecretKey

log = logging.getLogger(__name__)

TOKEN_PREFIX = "tok_"
TOKEN_HEX = 32
TOKEN = re.compile(r"^tok_[0-9a-f]{32}$")
_TOKEN_LABEL = b"cdc_platform token v1"
_SEAL_LABEL = b"cdc_platform vault aes-gcm v1"


@dataclass(frozen=True)
class VaultEntry:
    """One sealed plaintext: what the vault table stores for a token."""

    token: str
    key_id: str
    nonce: bytes
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"VaultEntry({self.token!r}, key_id={self.key_id!r})"


class VaultCipher:
    """Tokens and sealed entries under one vault key."""

    def __init__(self, key: SecretKey) -> None:
        self.key_id = key.key_id
        material = key.material
        self._token_mac = hmac.new(hmac.digest(material, _TOKEN_LABEL, "sha256"), digestmod="sha256")
        self._seal_key = hmac.digest(material, _SEAL_LABEL, "sha256")

    def __repr__(self) -> str:
        return f"VaultCipher(key_id={self.key_id!r})"

    def __reduce__(self) -> Any:
        raise TypeError("VaultCipher holds key material and cannot be pickled")

    def token(self, plaintext: str) -> str:
        mac = self._token_mac.copy()
        mac.update(plaintext.encode("utf-8"))
        return TOKEN_PREFIX + mac.hexdigest()[:TOKEN_HEX]

    def _aad(self, token: str, key_id: str) -> bytes:
        return f"{token}\x00{key_id}".encode()

    def seal(self, token: str, plaintext: str) -> VaultEntry:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(12)
        ciphertext = AESGCM(self._seal_key).encrypt(
            nonce, plaintext.encode("utf-8"), self._aad(token, self.key_id)
        )
        return VaultEntry(token, self.key_id, nonce, ciphertext)

    def open(self, entry: VaultEntry) -> str:
        """The plaintext of an entry.

        Raises:
            VaultKeyError: the entry was sealed under another key, or was altered.
        """
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            plain = AESGCM(self._seal_key).decrypt(
                entry.nonce, entry.ciphertext, self._aad(entry.token, entry.key_id)
            )
        except InvalidTag:
            raise VaultKeyError(
                f"the key given ({self.key_id!r}) does not open token {entry.token} "
                f"(sealed under key id {entry.key_id!r})"
            ) from None
        return plain.decode("utf-8")


class TokenStore(Protocol):
    """Where sealed entries go: :class:`TokenVault` (PostgreSQL) or :class:`MemoryTokenVault`."""

    def store(self, entries: Sequence[VaultEntry]) -> int: ...

    def detokenize(self, tokens: Iterable[str], vault_key: SecretKey) -> dict[str, str]: ...


def _open_all(rows: Iterable[VaultEntry], vault_key: SecretKey) -> dict[str, str]:
    cipher = VaultCipher(vault_key)
    return {e.token: cipher.open(e) for e in rows}


class MemoryTokenVault:
    """An in-process vault (tests, dry runs): same semantics as :class:`TokenVault`."""

    def __init__(self) -> None:
        self.entries: dict[str, VaultEntry] = {}

    def __repr__(self) -> str:
        return f"MemoryTokenVault({len(self.entries)} tokens)"

    def store(self, entries: Sequence[VaultEntry]) -> int:
        added = 0
        for e in entries:
            if e.token not in self.entries:
                self.entries[e.token] = e
                added += 1
        return added

    def detokenize(self, tokens: Iterable[str], vault_key: SecretKey) -> dict[str, str]:
        return _open_all((self.entries[t] for t in tokens if t in self.entries), vault_key)


class TokenVault:
    """PostgreSQL-backed token vault (table ``<schema>.token_vault``).

    Args:
        url: libpq connection string or URL (the password from ``PGPASSWORD``/``.pgpass``).
        schema: the PostgreSQL schema holding the table.
    """

    def __init__(self, url: str, schema: str = "cdc_meta", *, connect_timeout: int = 10) -> None:
        self.url = url
        self.schema = schema
        self.connect_timeout = connect_timeout
        self._conn: Any = None
        self._ensured = False

    def __repr__(self) -> str:
        return f"TokenVault(schema={self.schema!r})"  # the URL may hold a password

    def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, connect_timeout=self.connect_timeout, autocommit=False)
            self._ensured = False
        return self._conn

    def _table(self) -> Any:
        from psycopg import sql

        return sql.Identifier(self.schema, "token_vault")

    def ensure(self) -> None:
        """Creates the schema and table if missing (serialized by an advisory lock)."""
        from psycopg import sql

        conn = self._connection()
        if self._ensured:
            return
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s)",
                (
                    int.from_bytes(
                        hashlib.sha256(b"token_vault " + self.schema.encode()).digest()[:8],
                        "big",
                        signed=True,
                    ),
                ),
            )
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (token text PRIMARY KEY, key_id text NOT NULL, "
                    "nonce bytea NOT NULL, ciphertext bytea NOT NULL, "
                    "created_at timestamptz NOT NULL DEFAULT now())"
                ).format(self._table())
            )
        self._ensured = True

    def store(self, entries: Sequence[VaultEntry]) -> int:
        """Stores sealed entries; tokens already present are kept as they are.

        Returns:
            How many tokens were new.

        Raises:
            VaultError: the database refused the write (the message names no token or value).
        """
        if not entries:
            return 0
        import psycopg
        from psycopg import sql

        try:
            self.ensure()
            conn = self._connection()
            with conn.transaction():
                cur = conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (token, key_id, nonce, ciphertext) "
                        "SELECT * FROM unnest(%s::text[], %s::text[], %s::bytea[], %s::bytea[]) "
                        "ON CONFLICT (token) DO NOTHING"
                    ).format(self._table()),
                    (
                        [e.token for e in entries],
                        [e.key_id for e in entries],
                        [e.nonce for e in entries],
                        [e.ciphertext for e in entries],
                    ),
                )
                added = cur.rowcount
        except psycopg.Error as exc:
            self._reset()
            raise VaultError(
                f"token vault {self.schema}.token_vault: storing {len(entries)} tokens failed: "
                f"{type(exc).__name__}"
            ) from None
        log.debug("token vault: %d of %d tokens new", added, len(entries))
        return int(added)

    def entries(self, tokens: Iterable[str]) -> list[VaultEntry]:
        """The sealed entries of the tokens present in the vault."""
        wanted = sorted({t for t in tokens if TOKEN.match(t)})
        if not wanted:
            return []
        from psycopg import sql

        self.ensure()
        conn = self._connection()
        with conn.transaction():
            rows = conn.execute(
                sql.SQL("SELECT token, key_id, nonce, ciphertext FROM {} WHERE token = ANY(%s)").format(
                    self._table()
                ),
                (wanted,),
            ).fetchall()
        return [VaultEntry(r[0], r[1], bytes(r[2]), bytes(r[3])) for r in rows]

    def detokenize(self, tokens: Iterable[str], vault_key: SecretKey) -> dict[str, str]:
        """Plaintexts of tokens, for a caller holding the vault key.

        Args:
            tokens: tokens as stored in destinations (``tok_…``); others are ignored.
            vault_key: the key the tokens were sealed under.

        Returns:
            token → plaintext for the tokens found in the vault (unknown tokens are absent).

        Raises:
            VaultKeyError: a token's entry does not open with this key.
        """
        return _open_all(self.entries(tokens), vault_key)

    def _reset(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        self._reset()

    def __enter__(self) -> TokenVault:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
