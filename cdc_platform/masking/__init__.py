"""Masking of PII/PHI in row changes before they leave the process.

Deterministic algorithms (the same plaintext always gives the same masked value), so replays
and replica copies converge in every destination. See ``docs/masking.md`` and
``config/masking.yaml``.
"""

from __future__ import annotations

from cdc_platform.masking.errors import (
    KeyUnavailableError,
    MaskingConfigError,
    MaskingError,
    VaultError,
    VaultKeyError,
)
from cdc_platform.masking.policy import AuditEntry, MaskAudit, MaskingPolicy, MaskResult, Rule
from cdc_platform.masking.secrets import SecretKey, SecretSource
from cdc_platform.masking.vault import MemoryTokenVault, TokenVault, VaultEntry
from cdc_platform.masking.verify import Finding, VerifyReport, verify

__all__ = [
    "AuditEntry",
    "Finding",
    "KeyUnavailableError",
    "MaskAudit",
    "MaskResult",
    "MaskingConfigError",
    "MaskingError",
    "MaskingPolicy",
    "MemoryTokenVault",
    "Rule",
    "SecretKey",
    "SecretSource",
    "TokenVault",
    "VaultEntry",
    "VaultError",
    "VaultKeyError",
    "VerifyReport",
    "verify",
]
