"""The masking registry: one class per algorithm, what it applies to and how it masks.

Every algorithm is deterministic (the same plaintext always gives the same masked value),
so replays, reruns and the three replica copies of a write converge in every destination,
and keeps the value a valid value of its CQL type.

==============  ===========================  ==============================================
algorithm       applies to                   masked value
==============  ===========================  ==============================================
hmac_sha256     text, ascii                  ``h1:<key id>:<64 hex>``: HMAC-SHA256 of the UTF-8
                                             plaintext under the key; joinable across tables
sha256          text, ascii                  ``<64 hex>``: SHA-256 of a per-column salt and the
                                             plaintext (unkeyed: guessable for small domains)
tokenize        text, ascii                  ``tok_<32 hex>``: reversible through the token vault
redact          any type                     null, or a fixed text (text types only)
partial         text, ascii                  ``*`` for every character but the last N (at most
                                             half of them), or for an e-mail's local part
generalize      date, timestamp              the first day of the month (or year), 00:00 UTC
                tinyint … bigint, varint,    the lower bound of the ``width``-wide range
                decimal, float, double
                inet                         the network address at a prefix length
==============  ===========================  ==============================================

Values that identify something (primary-key values, map keys, elements of non-frozen sets)
may only be masked by ``hmac_sha256``, ``sha256`` or ``tokenize``: the others would merge
distinct rows or elements into one.
"""

from __future__ import annotations

import abc
import decimal
import hashlib
import hmac
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

from cdc_platform.masking.secrets import SecretKey
from cdc_platform.masking.vault import TOKEN, VaultCipher
from cdc_platform.schema.render import civil_from_days
from cdc_platform.schema.types import CqlType, NativeType

TEXT_TYPES = frozenset({"text", "ascii"})
INTEGER_RANGES: dict[str, tuple[int | None, int | None]] = {
    "tinyint": (-(1 << 7), (1 << 7) - 1),
    "smallint": (-(1 << 15), (1 << 15) - 1),
    "int": (-(1 << 31), (1 << 31) - 1),
    "bigint": (-(1 << 63), (1 << 63) - 1),
    "varint": (None, None),
}
NUMBER_TYPES = frozenset({*INTEGER_RANGES, "decimal", "float", "double"})
GENERALIZABLE = frozenset({*NUMBER_TYPES, "date", "timestamp", "inet"})
MS_PER_DAY = 86_400_000

HMAC_VALUE = re.compile(r"^h1:([A-Za-z0-9_.-]{1,64}):([0-9a-f]{64})$")
SHA256_VALUE = re.compile(r"^[0-9a-f]{64}$")


class ValueShapeError(TypeError):
    """A value is not of the Python type its CQL type decodes to (never quotes the value)."""


def native_name(t: CqlType) -> str | None:
    return t.name if isinstance(t, NativeType) else None


def _text(value: Any, algorithm: str) -> str:
    if not isinstance(value, str):
        raise ValueShapeError(f"{algorithm} expects a text value, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------------------------
# Calendar arithmetic on day counts (exact for every int, like the decoder's values); the
# other direction is cdc_platform.schema.render.civil_from_days.


def days_from_civil(y: int, m: int, d: int) -> int:
    """Day count since 1970-01-01 of a proleptic Gregorian date."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


# --------------------------------------------------------------------------------------------
# Building


@dataclass
class RuleSpec:
    """What an algorithm is built from: the rule, its target and the policy's key resolver.

    Attributes:
        qualified_path: ``keyspace.table.column[.field…]`` (salts, messages).
        leaf_type: the CQL type of the masked values.
        identity: the masked values identify rows or elements.
        nullable: the masked value may become null.
        params: the rule's parameters (without ``algorithm``).
        key: resolves a key id (already validated) to its key.
        hmac_key: the default current HMAC key id; ``hmac_previous``: its previous key ids.
        vault_key: the default token vault key id.
        fail: raises the configuration error for this rule.
    """

    qualified_path: str
    leaf_type: CqlType
    identity: bool
    nullable: bool
    params: Mapping[str, Any]
    key: Callable[[str], SecretKey]
    hmac_key: str | None
    hmac_previous: tuple[str, ...]
    vault_key: str | None
    fail: Callable[[str], NoReturn]

    def check_params(self, algorithm: str, allowed: set[str]) -> None:
        unknown = sorted(set(self.params) - allowed)
        if unknown:
            self.fail(
                f"{algorithm} has no parameter {', '.join(unknown)}"
                + (f" (parameters: {', '.join(sorted(allowed))})" if allowed else " (it takes none)")
            )

    def require_text(self, algorithm: str) -> None:
        if native_name(self.leaf_type) not in TEXT_TYPES:
            self.fail(f"{algorithm} applies to text/ascii/varchar values, not {self.leaf_type.cql()}")

    def int_param(self, name: str, default: int | None, minimum: int) -> int | None:
        value = self.params.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(f"{name} must be an integer ≥ {minimum}")
        return int(value)


def _digits(d: decimal.Decimal) -> int:
    t = d.as_tuple()
    return len(t.digits) + (abs(t.exponent) if isinstance(t.exponent, int) else 0)


class Masker(abc.ABC):
    """One rule's masking function over non-null values of its leaf type."""

    algorithm: ClassVar[str]
    #: Distinct plaintexts stay distinct (what identity positions need).
    injective: ClassVar[bool] = False
    key_id: str | None = None

    @classmethod
    @abc.abstractmethod
    def build(cls, spec: RuleSpec) -> Masker:
        """Validates the rule against its target and builds the masker (raises via ``spec.fail``)."""

    @abc.abstractmethod
    def mask(self, value: Any) -> Any:
        """The masked value (``None`` for null).

        Raises:
            ValueShapeError: the value is not of the leaf type's Python type.
        """

    @abc.abstractmethod
    def check(self, value: Any) -> str | None:
        """Why a stored (non-null) value does not look masked by this rule; ``None`` if it does."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self.key_id!r})" if self.key_id else f"{type(self).__name__}()"


class HmacSha256(Masker):
    """Keyed, deterministic and joinable: ``h1:<key id>:<hex>``; rotation by key id."""

    algorithm = "hmac_sha256"
    injective = True

    def __init__(self, key: SecretKey, previous: tuple[SecretKey, ...] = ()) -> None:
        self.key_id = key.key_id
        self._macs = [(k.key_id, hmac.new(k.material, digestmod=hashlib.sha256)) for k in (key, *previous)]
        self.key_ids = frozenset(k for k, _ in self._macs)

    @classmethod
    def build(cls, spec: RuleSpec) -> Masker:
        spec.check_params(cls.algorithm, {"key", "previous_keys"})
        spec.require_text(cls.algorithm)
        current = spec.params.get("key", spec.hmac_key)
        if current is None:
            spec.fail("hmac_sha256 needs a key: give the rule a key, or set hmac.key")
        previous = spec.params.get("previous_keys", spec.hmac_previous if "key" not in spec.params else ())
        if isinstance(previous, str) or not isinstance(previous, (list, tuple)):
            spec.fail("previous_keys must be a list of key ids")
        previous = tuple(p for p in previous if p != current)
        return cls(spec.key(str(current)), tuple(spec.key(str(p)) for p in previous))

    def _one(self, key_id: str, mac: Any, plaintext: str) -> str:
        m = mac.copy()
        m.update(plaintext.encode("utf-8"))
        return f"h1:{key_id}:{m.hexdigest()}"

    def mask(self, value: Any) -> str:
        key_id, mac = self._macs[0]
        return self._one(key_id, mac, _text(value, self.algorithm))

    def candidates(self, plaintext: str) -> list[str]:
        """The masked value under the current key, then under each previous key."""
        return [self._one(k, mac, _text(plaintext, self.algorithm)) for k, mac in self._macs]

    def check(self, value: Any) -> str | None:
        m = HMAC_VALUE.match(value) if isinstance(value, str) else None
        if m is None:
            return "not an hmac_sha256 value (h1:<key id>:<64 hex>)"
        if m.group(1) not in self.key_ids:
            return "hmac_sha256 value under a key id the policy does not know"
        return None


class Sha256(Masker):
    """Unkeyed hash salted per column (``keyspace.table.column``): 64 hex digits."""

    algorithm = "sha256"
    injective = True

    def __init__(self, qualified_path: str) -> None:
        salt = hashlib.sha256(b"cdc_platform sha256 salt v1\x00" + qualified_path.encode("utf-8")).digest()
        self._hash = hashlib.sha256(salt)

    @classmethod
    def build(cls, spec: RuleSpec) -> Masker:
        spec.check_params(cls.algorithm, set())
        spec.require_text(cls.algorithm)
        return cls(spec.qualified_path)

    def mask(self, value: Any) -> str:
        h = self._hash.copy()
        h.update(_text(value, self.algorithm).encode("utf-8"))
        return h.hexdigest()

    def check(self, value: Any) -> str | None:
        if isinstance(value, str) and SHA256_VALUE.match(value):
            return None
        return "not a sha256 value (64 hex digits)"


class Tokenize(Masker):
    """Reversible through the token vault: ``tok_<32 hex>``."""

    algorithm = "tokenize"
    injective = True

    def __init__(self, cipher: VaultCipher) -> None:
        self.cipher = cipher
        self.key_id = cipher.key_id

    @classmethod
    def build(cls, spec: RuleSpec) -> Masker:
        spec.check_params(cls.algorithm, {"key"})
        spec.require_text(cls.algorithm)
        key_id = spec.params.get("key", spec.vault_key)
        if key_id is None:
            spec.fail("tokenize needs a vault key: give the rule a key, or set vault.key")
        return cls(VaultCipher(spec.key(str(key_id))))

    def mask(self, value: Any) -> str:
        return self.cipher.token(_text(value, self.algorithm))

    def check(self, value: Any) -> str | None:
        if isinstance(value, str) and TOKEN.match(value):
            return None
        return "not a token (tok_<32 hex>)"


class Redact(Masker):
    """Null, or a fixed text."""

    algorithm = "redact"

    def __init__(self, value: str | None) -> None:
        self.value = value

    @classmethod
    def build(cls, spec: RuleSpec) -> Masker:
        spec.check_params(cls.algorithm, {"value"})
        value = spec.params.get("value")
        if value is None:
            if not spec.nullable:
                spec.fail("collection elements cannot be null: redact them with a fixed value, or mask them")
            return cls(None)
        if not isinstance(value, str):
            spec.fail("redact's value must be a text")
        if native_name(spec.leaf_type) not in TEXT_TYPES:
            spec.fail(
                f"redact with a fixed text applies to text/ascii/varchar values, not {spec.leaf_type.cql()}"
            )
        if native_name(spec.leaf_type) == "ascii" and not value.isascii():
            spec.fail("redact's value must be ASCII for an ascii column")
        return cls(value)

    def mask(self, value: Any) -> str | None:
        return self.value

    def check(self, value: Any) -> str | None:
        if value == self.value:
            return None
        return (
            "not redacted (expected null)" if self.value is None else "not redacted (expected the fixed text)"
        )


class Partial(Masker):
    """Keeps the last N characters (at most half of the value), or an e-mail's domain."""

    algorithm = "partial"

    def __init__(self, keep_last: int, keep_domain: bool) -> None:
        self.keep_last = keep_last
        self.keep_domain = keep_domain

    @classmethod
    def build(cls, spec: RuleSpec) -> Masker:
        spec.check_params(cls.algorithm, {"keep_last", "keep_domain"})
        spec.require_text(cls.algorithm)
        keep_domain = spec.params.get("keep_domain", False)
        if not isinstance(keep_domain, bool):
            spec.fail("keep_domain must be true or false")
        if keep_domain and "keep_last" in spec.params:
            spec.fail("give either keep_last or keep_domain, not both")
        keep_last = spec.int_param("keep_last", 4, 0)
        assert keep_last is not None
        return cls(keep_last, keep_domain)

    def _kept(self, text: str) -> int:
        if self.keep_domain:
            at = text.rfind("@")
            return len(text) - at if at >= 0 else 0
        # Short values would otherwise be kept whole: never keep more than half.
        return min(self.keep_last, len(text) // 2)

    def mask(self, value: Any) -> str:
        text = _text(value, self.algorithm)
        kept = self._kept(text)
        return "*" * (len(text) - kept) + text[len(text) - kept :]

    def check(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return "not a text value"
        kept = self._kept(value)
        if value[: len(value) - kept].strip("*"):
            return "partial value with unmasked characters"
        return None


class Generalize(Masker):
    """Dates and timestamps to the month (or year), numbers to a range, inet to a network."""

    algorithm = "generalize"

    def __init__(
        self,
        type_name: str,
        *,
        to: str = "month",
        width: int | decimal.Decimal | float | None = None,
        ipv4_prefix: int = 24,
        ipv6_prefix: int = 48,
    ) -> None:
        self.type_name = type_name
        self.to = to
        self.width = width
        self.ipv4_prefix = ipv4_prefix
        self.ipv6_prefix = ipv6_prefix

    @classmethod
    def build(cls, spec: RuleSpec) -> Masker:
        name = native_name(spec.leaf_type)
        if name not in GENERALIZABLE:
            spec.fail(
                f"generalize applies to date, timestamp, numbers and inet values, not {spec.leaf_type.cql()}"
            )
        assert name is not None
        if name in ("date", "timestamp"):
            spec.check_params(cls.algorithm, {"to"})
            to = spec.params.get("to", "month")
            if to not in ("month", "year"):
                spec.fail("generalize 'to' is month or year")
            return cls(name, to=to)
        if name == "inet":
            spec.check_params(cls.algorithm, {"ipv4_prefix", "ipv6_prefix"})
            v4 = spec.int_param("ipv4_prefix", 24, 0)
            v6 = spec.int_param("ipv6_prefix", 48, 0)
            assert v4 is not None and v6 is not None
            if v4 > 32 or v6 > 128:
                spec.fail("ipv4_prefix is at most 32, ipv6_prefix at most 128")
            return cls(name, ipv4_prefix=v4, ipv6_prefix=v6)
        spec.check_params(cls.algorithm, {"width"})
        raw = spec.params.get("width")
        width: int | decimal.Decimal | float
        if name in INTEGER_RANGES:
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
                spec.fail(f"generalize on {name} needs an integer width ≥ 1")
            width = int(raw)
        elif name == "decimal":
            try:
                width = decimal.Decimal(str(raw))
            except decimal.InvalidOperation:
                width = decimal.Decimal(0)
            if isinstance(raw, bool) or raw is None or not width.is_finite() or width <= 0:
                spec.fail("generalize on decimal needs a positive width")
        else:
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 < raw < math.inf:
                spec.fail(f"generalize on {name} needs a positive width")
            width = float(raw)
        return cls(name, width=width)

    # -- masking --------------------------------------------------------------------------

    def _month_start(self, days: int) -> int:
        y, m, _ = civil_from_days(days)
        return days_from_civil(y, 1 if self.to == "year" else m, 1)

    def mask(self, value: Any) -> Any:
        name = self.type_name
        if name == "date":
            return self._month_start(self._int(value))
        if name == "timestamp":
            return self._month_start(self._int(value) // MS_PER_DAY) * MS_PER_DAY
        if name == "inet":
            if not isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                raise ValueShapeError(f"generalize on inet expects an address, got {type(value).__name__}")
            prefix = self.ipv4_prefix if value.version == 4 else self.ipv6_prefix
            return ipaddress.ip_network(f"{value}/{prefix}", strict=False).network_address
        if name in INTEGER_RANGES:
            assert isinstance(self.width, int)
            low = self._int(value) // self.width * self.width
            minimum = INTEGER_RANGES[name][0]
            return low if minimum is None else max(low, minimum)
        if name == "decimal":
            if not isinstance(value, decimal.Decimal):
                raise ValueShapeError(f"generalize on decimal expects a Decimal, got {type(value).__name__}")
            if not value.is_finite():
                return value
            assert isinstance(self.width, decimal.Decimal)
            with decimal.localcontext() as ctx:
                # Enough digits that the floor is exact whatever the magnitudes and scales.
                ctx.prec = _digits(value) + _digits(self.width) + 28
                return (value / self.width).to_integral_value(rounding=decimal.ROUND_FLOOR) * self.width
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueShapeError(f"generalize on {name} expects a float, got {type(value).__name__}")
        if not math.isfinite(value):
            return value
        assert isinstance(self.width, float)
        return math.floor(value / self.width) * self.width

    @staticmethod
    def _int(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueShapeError(f"generalize expects an integer-coded value, got {type(value).__name__}")
        return value

    def check(self, value: Any) -> str | None:
        name = self.type_name
        try:
            masked = self.mask(value)
        except ValueShapeError:
            return f"not a {name} value"
        if name == "float" or name == "double":
            if abs(masked - value) <= 1e-6 * max(1.0, abs(value)):
                return None
        elif masked == value:
            return None
        if name == "date":
            return f"date not on the first day of the {self.to}"
        if name == "timestamp":
            return f"timestamp not at the start of the {self.to}"
        if name == "inet":
            return "address with host bits (not generalized to its network)"
        return "number not on a range boundary"


REGISTRY: dict[str, type[Masker]] = {
    cls.algorithm: cls for cls in (HmacSha256, Sha256, Tokenize, Redact, Partial, Generalize)
}


def build_masker(algorithm: Any, spec: RuleSpec) -> Masker:
    """The masker for a rule; injectivity at identity positions is checked here."""
    cls = REGISTRY.get(algorithm) if isinstance(algorithm, str) else None
    if cls is None:
        spec.fail(f"unknown algorithm {algorithm!r} (algorithms: {', '.join(sorted(REGISTRY))})")
    assert cls is not None
    if spec.identity and not cls.injective:
        spec.fail(
            f"{algorithm} would merge distinct keys (primary-key values, map keys and elements of "
            "non-frozen sets identify rows or elements): use hmac_sha256, sha256 or tokenize"
        )
    return cls.build(spec)
