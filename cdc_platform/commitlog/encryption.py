"""Transparent data encryption of commit log segments (``security/EncryptionUtils``).

Section payload: blocks of ``u32 encryptedLength``, ``u32 plaintextLength`` and the
ciphertext. Each block is an independent AES/CBC/PKCS5 message with the segment's IV
(Cassandra calls ``doFinal`` on one cipher, which resets it to the IV). The plaintext is
``i32`` (big-endian) chunk length, then the LZ4 compressor output (little-endian length,
raw LZ4 block). Chunks are cut at fixed sizes (64 KiB by default), not at entry boundaries.

Keys: Cassandra's ``JKSKeyProvider`` loads a keystore (JCEKS in practice) with the store
password and reads the key under the header's ``encKeyAlias`` (lower-cased for JCEKS)
with the key password, which defaults to the store password. Raw key material can be
given instead, from a secret.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import lz4.block
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SUPPORTED_CIPHERS = ("AES/CBC/PKCS5PADDING",)
AES_BLOCK_SIZE = 16
DEFAULT_CHUNK_LENGTH = 64 * 1024

_BLOCK_HEADER = struct.Struct(">II")


class KeyUnavailableError(LookupError):
    """The key for an alias cannot be obtained (no keystore, wrong password, missing alias)."""


class KeyProvider(Protocol):
    """Gives the raw key bytes stored under an alias."""

    def key(self, alias: str) -> bytes: ...


class RawKeyProvider:
    """Keys given directly (from a secret): one key for every alias, or a key per alias."""

    def __init__(self, keys: bytes | Mapping[str, bytes]) -> None:
        self._single = keys if isinstance(keys, bytes) else None
        self._keys = {} if isinstance(keys, bytes) else {k.lower(): v for k, v in keys.items()}
        for k in [self._single] if self._single is not None else list(self._keys.values()):
            if len(k) not in (16, 24, 32):
                raise ValueError(f"an AES key is 16, 24 or 32 bytes, not {len(k)}")

    def key(self, alias: str) -> bytes:
        if self._single is not None:
            return self._single
        try:
            return self._keys[alias.lower()]
        except KeyError:
            raise KeyUnavailableError(f"no key given for alias {alias!r}") from None

    def __repr__(self) -> str:  # never show key material
        return "RawKeyProvider(***)"


class KeystoreKeyProvider:
    """Cassandra's ``JKSKeyProvider``: a JCEKS (or JKS) keystore file and its passwords.

    Args:
        path: keystore file.
        store_password: the keystore password.
        key_password: the key-entry password; defaults to the store password, as in Cassandra.
    """

    def __init__(self, path: str | Path, store_password: str, key_password: str | None = None) -> None:
        self.path = Path(path)
        self._store_password = store_password
        self._key_password = key_password or store_password
        self._cache: dict[str, bytes] = {}
        self._store: object | None = None

    def __repr__(self) -> str:
        return f"KeystoreKeyProvider({str(self.path)!r}, store_password=***)"

    def _load(self) -> object:
        if self._store is None:
            import jks  # pyjks

            try:
                self._store = jks.KeyStore.load(str(self.path), self._store_password, try_decrypt_keys=False)
            except FileNotFoundError:
                raise KeyUnavailableError(f"keystore {self.path} does not exist") from None
            except jks.util.KeystoreSignatureException:
                raise KeyUnavailableError(f"keystore {self.path}: wrong store password") from None
            except jks.util.BadKeystoreFormatException as exc:
                raise KeyUnavailableError(
                    f"keystore {self.path} is not a JCEKS/JKS keystore ({exc}); create it with "
                    "keytool -storetype JCEKS"
                ) from None
        return self._store

    def key(self, alias: str) -> bytes:
        lookup = alias.lower()
        if lookup in self._cache:
            return self._cache[lookup]
        import jks

        store = self._load()
        entries = getattr(store, "secret_keys", {})
        entry = entries.get(lookup)
        if entry is None:
            raise KeyUnavailableError(f"key {alias!r} was not found in keystore {self.path}")
        if not entry.is_decrypted():
            try:
                entry.decrypt(self._key_password)
            except jks.util.DecryptionFailureException:
                raise KeyUnavailableError(f"keystore {self.path}: wrong key password for {alias!r}") from None
        key = bytes(entry.key)
        self._cache[lookup] = key
        return key


def key_provider_from_env(
    keystore: str | Path | None = None,
    *,
    password: str | None = None,
    password_file: str | Path | None = None,
    key_password: str | None = None,
    raw_key_env: str = "CDC_COMMITLOG_KEY",
) -> KeyProvider | None:
    """Builds a key provider from explicit arguments, a secrets file or the environment.

    Order: ``password`` or ``password_file`` or ``$CDC_KEYSTORE_PASSWORD`` for the keystore;
    without a keystore, raw hex key material from ``$CDC_COMMITLOG_KEY``.
    """
    if keystore is not None:
        if password is None and password_file is not None:
            password = Path(password_file).read_text(encoding="utf-8").strip()
        if password is None:
            password = os.environ.get("CDC_KEYSTORE_PASSWORD")
        if password is None:
            raise KeyUnavailableError(
                f"keystore {keystore} needs a password: --keystore-password, a password file or $CDC_KEYSTORE_PASSWORD"
            )
        return KeystoreKeyProvider(keystore, password, key_password or os.environ.get("CDC_KEY_PASSWORD"))
    raw = os.environ.get(raw_key_env)
    if raw:
        try:
            return RawKeyProvider(bytes.fromhex(raw.strip()))
        except ValueError as exc:
            raise KeyUnavailableError(f"${raw_key_env} must be the AES key in hexadecimal: {exc}") from None
    return None


def _check_cipher(cipher: str) -> None:
    if cipher.upper() not in SUPPORTED_CIPHERS:
        raise ValueError(
            f"cipher {cipher!r} is not supported (only AES/CBC/PKCS5Padding, Cassandra's default)"
        )


def check_decryption_parameters(cipher: str, iv: bytes) -> None:
    """Checks a segment header's cipher and IV before anything is decrypted with them.

    Args:
        cipher: the header's ``encCipher``.
        iv: the header's ``encIV`` (empty when the header has none).

    Raises:
        ValueError: the cipher is not supported, or the IV is missing or not one AES block
            (Cassandra's ``EncryptionContext.getDecryptor`` refuses a missing IV the same way).
    """
    _check_cipher(cipher)
    if not iv:
        raise ValueError("the header has encCipher and encKeyAlias but no encIV: no IV to decrypt with")
    if len(iv) != AES_BLOCK_SIZE:
        raise ValueError(f"the header's encIV is {len(iv)} bytes; {cipher} needs {AES_BLOCK_SIZE}")


def decrypt_section(payload: bytes, key: bytes, iv: bytes, cipher: str) -> bytes:
    """Decrypts and decompresses the blocks of one encrypted section.

    Raises:
        ValueError: bad cipher or IV (:func:`check_decryption_parameters`), or a block is
            truncated, does not decrypt, or does not decompress.
    """
    check_decryption_parameters(cipher, iv)
    out = []
    pos = 0
    n = len(payload)
    while pos < n:
        if pos + 8 > n:
            raise ValueError(f"encrypted block header truncated at offset {pos} of the section")
        enc_len, plain_len = _BLOCK_HEADER.unpack_from(payload, pos)
        pos += 8
        if pos + enc_len > n:
            raise ValueError(f"encrypted block of {enc_len} bytes runs past the section end")
        block = payload[pos : pos + enc_len]
        pos += enc_len
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        try:
            padded = decryptor.update(block) + decryptor.finalize()
            unpadder = padding.PKCS7(128).unpadder()
            plain = unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise ValueError("block does not decrypt (wrong key, or damaged ciphertext)") from None
        if len(plain) != plain_len:
            raise ValueError(f"block decrypts to {len(plain)} bytes, its header says {plain_len}")
        if plain_len < 4:
            raise ValueError("decrypted block is too short for its length prefix")
        raw_len = struct.unpack_from(">i", plain, 0)[0]
        try:
            chunk = lz4.block.decompress(plain[4:])
        except Exception as exc:
            raise ValueError(f"decrypted block does not decompress: {exc}") from None
        if len(chunk) != raw_len:
            raise ValueError(f"block decompresses to {len(chunk)} bytes, its prefix says {raw_len}")
        out.append(chunk)
    return b"".join(out)


def encrypt_section(
    plaintext: bytes,
    key: bytes,
    iv: bytes,
    cipher: str = "AES/CBC/PKCS5Padding",
    chunk_length: int = DEFAULT_CHUNK_LENGTH,
) -> bytes:
    """Compresses and encrypts section content the way ``EncryptedSegment.write`` does."""
    _check_cipher(cipher)
    out = []
    for off in range(0, len(plaintext), chunk_length):
        chunk = plaintext[off : off + chunk_length]
        plain = struct.pack(">i", len(chunk)) + lz4.block.compress(chunk, store_size=True)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plain) + padder.finalize()
        encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        out.append(_BLOCK_HEADER.pack(len(ciphertext), len(plain)) + ciphertext)
    return b"".join(out)
