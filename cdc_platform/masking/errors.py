"""Exceptions of the masking stage.

None of them ever carries key material or a plaintext value: messages name the file, the
table, the column (path) and what was expected, which is what an operator needs to act.
"""

from __future__ import annotations


class MaskingConfigError(ValueError):
    """The masking configuration is invalid for the schema (raised at load time).

    Attributes:
        source: the configuration file (or ``<dict>``).
        table: ``keyspace.table`` the error is about, if any.
        column: the column path (``email``, ``address.street``, ``tags[]``), if any.
    """

    def __init__(self, message: str, *, source: str, table: str | None = None, column: str | None = None):
        self.source = source
        self.table = table
        self.column = column
        where = source
        if table:
            where += f": {table}" + (f".{column}" if column else "")
        super().__init__(f"{where}: {message}")


class KeyUnavailableError(LookupError):
    """A masking key cannot be obtained (variable unset, file missing, too short)."""


class MaskingError(RuntimeError):
    """Masking a batch failed (schema drift, an unexpected value shape, no token vault)."""

    def __init__(self, message: str, *, table: str, column: str | None = None) -> None:
        self.table = table
        self.column = column
        super().__init__(f"{table}" + (f".{column}" if column else "") + f": {message}")


class VaultError(RuntimeError):
    """The token vault cannot store or return tokens."""


class VaultKeyError(VaultError):
    """The key given does not open a token's ciphertext (a caller without the vault key)."""
