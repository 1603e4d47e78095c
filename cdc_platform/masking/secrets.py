"""Masking keys: resolved from the environment or secret files, never from configuration.

The configuration names a key id and where its material lives::

    keys:
      mask-2026: {env: CDC_MASK_KEY_2026}        # an environment variable
      mask-2025: {file: mask-2025.key}           # a file (relative: secrets dir, else config dir)

A secret's text is the key itself (UTF-8), or ``hex:<hex digits>`` / ``base64:<base64>``;
surrounding whitespace is ignored. Keys are at least 16 bytes. Key material is held by
:class:`SecretKey`, whose ``repr``/``str`` show the id and the source only, and which
refuses to be pickled (so it cannot end up in a run's serialized state).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from cdc_platform.masking.errors import KeyUnavailableError

MIN_KEY_BYTES = 16
KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DEFAULT_ENV_PREFIX = "CDC_MASK_KEY_"


def valid_key_id(key_id: Any) -> bool:
    return isinstance(key_id, str) and bool(KEY_ID.match(key_id))


class SecretKey:
    """Key material under an id. Prints as ``SecretKey('id', from $VAR, ***)``."""

    __slots__ = ("_material", "key_id", "origin")

    def __init__(self, key_id: str, material: bytes, origin: str) -> None:
        self.key_id = key_id
        self.origin = origin
        self._material = bytes(material)

    @property
    def material(self) -> bytes:
        """The key bytes (only the algorithms read them)."""
        return self._material

    def __repr__(self) -> str:
        return f"SecretKey({self.key_id!r}, from {self.origin}, ***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SecretKey) and self.key_id == other.key_id and self._material == other._material
        )

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"SecretKey {self.key_id!r} cannot be pickled: key material never leaves the process")


def _decode_secret(text: str, key_id: str, origin: str) -> bytes:
    text = text.strip()
    try:
        if text.startswith("hex:"):
            raw = bytes.fromhex(text[4:])
        elif text.startswith("base64:"):
            raw = base64.b64decode(text[7:], validate=True)
        else:
            raw = text.encode("utf-8")
    except (ValueError, binascii.Error):
        # The decoding error would quote the secret: say only which form was expected.
        raise KeyUnavailableError(
            f"key {key_id!r} from {origin} is not valid {text.split(':', 1)[0]} text"
        ) from None
    if len(raw) < MIN_KEY_BYTES:
        raise KeyUnavailableError(
            f"key {key_id!r} from {origin} is {len(raw)} bytes; at least {MIN_KEY_BYTES} are needed"
        )
    return raw


class SecretSource:
    """Resolves key ids to key bytes.

    Args:
        environ: the environment to read (``os.environ`` when ``None``).
        secrets_dir: directory for relative ``file:`` paths and for keys the configuration
            lists without a source (file ``<secrets_dir>/<key id>``).

    A key listed without a source is looked up as ``$CDC_MASK_KEY_<ID>`` (id upper-cased,
    ``-`` and ``.`` as ``_``), then as a file named after the id in ``secrets_dir``.
    """

    def __init__(
        self, *, environ: Mapping[str, str] | None = None, secrets_dir: str | Path | None = None
    ) -> None:
        self._environ = environ
        self.secrets_dir = Path(secrets_dir) if secrets_dir is not None else None

    def __repr__(self) -> str:
        return f"SecretSource(secrets_dir={str(self.secrets_dir) if self.secrets_dir else None!r})"

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    @staticmethod
    def default_env_name(key_id: str) -> str:
        return DEFAULT_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", key_id).upper()

    def resolve(
        self, key_id: str, spec: Mapping[str, Any] | None = None, *, base_dir: Path | None = None
    ) -> SecretKey:
        """The key ``key_id`` from the source ``spec`` names (``{env: VAR}`` or ``{file: path}``).

        Args:
            key_id: the key's id in the configuration.
            spec: where its material lives; ``None``: the default variable or file.
            base_dir: directory for relative ``file:`` paths when no ``secrets_dir`` is set.

        Raises:
            KeyUnavailableError: unset variable, missing file, bad encoding, key too short.
        """
        if not valid_key_id(key_id):
            raise KeyUnavailableError(f"key id {key_id!r} is not [A-Za-z0-9_.-], 1-64 characters")
        if spec is None:
            env = self.default_env_name(key_id)
            if env in self.environ:
                return self._from_env(key_id, env)
            if self.secrets_dir is not None and (self.secrets_dir / key_id).is_file():
                return self._from_file(key_id, self.secrets_dir / key_id)
            raise KeyUnavailableError(
                f"key {key_id!r}: set ${env}"
                + (f" or write {self.secrets_dir / key_id}" if self.secrets_dir else "")
                + " (or name its source in the configuration)"
            )
        if "env" in spec:
            return self._from_env(key_id, str(spec["env"]))
        path = Path(str(spec["file"])).expanduser()
        if not path.is_absolute():
            path = (self.secrets_dir or base_dir or Path.cwd()) / path
        return self._from_file(key_id, path)

    def _from_env(self, key_id: str, name: str) -> SecretKey:
        text = self.environ.get(name)
        if text is None or not text.strip():
            raise KeyUnavailableError(f"key {key_id!r}: environment variable ${name} is not set")
        origin = f"${name}"
        return SecretKey(key_id, _decode_secret(text, key_id, origin), origin)

    def _from_file(self, key_id: str, path: Path) -> SecretKey:
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise KeyUnavailableError(f"key {key_id!r}: cannot read {path}: {reason}") from None
        origin = f"file {path}"
        return SecretKey(key_id, _decode_secret(text, key_id, origin), origin)
