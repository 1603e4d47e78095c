"""Each algorithm's properties: determinism, irreversibility without the key, kept formats."""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc_platform.masking.algorithms import (
    Generalize,
    HmacSha256,
    Partial,
    Redact,
    Sha256,
    Tokenize,
    civil_from_days,
    days_from_civil,
)
from cdc_platform.masking.secrets import SecretKey
from cdc_platform.masking.vault import VaultCipher

KEY_A = SecretKey("a", b"A" * 32, "test")
KEY_B = SecretKey("b", b"B" * 32, "test")
HMAC_FORMAT = re.compile(r"^h1:a:[0-9a-f]{64}$")

texts = st.text(min_size=1, max_size=40)


@given(texts, texts)
def test_hmac_is_deterministic_injective_and_keyed(x: str, y: str) -> None:
    a = HmacSha256(KEY_A)
    assert a.mask(x) == HmacSha256(KEY_A).mask(x)  # another process, same key: same value
    assert HMAC_FORMAT.match(a.mask(x))
    assert (a.mask(x) == a.mask(y)) == (x == y)
    other = HmacSha256(SecretKey("a", b"C" * 32, "test")).mask(x)
    assert other != a.mask(x)  # the same key id with other material: nothing in common
    assert other.split(":")[2] != a.mask(x).split(":")[2]


# Plaintexts made only of the output alphabet (hex digits, "h1:", "tok_") may occur by chance.
plaintexts = st.text(min_size=3, max_size=40).filter(lambda s: not set(s) <= set("0123456789abcdefhtok_:"))


@given(plaintexts)
def test_masked_values_hold_no_plaintext(x: str) -> None:
    for masker in (HmacSha256(KEY_A), Sha256("ks.t.c"), Tokenize(VaultCipher(KEY_A))):
        masked = masker.mask(x)
        assert x not in masked
        assert masker.check(masked) is None


def test_hmac_is_the_standard_hmac_sha256() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"A" * 32, b"ada@example.org", hashlib.sha256).hexdigest()
    assert HmacSha256(KEY_A).mask("ada@example.org") == f"h1:a:{expected}"


def test_hmac_candidates_cover_current_and_previous_keys() -> None:
    rotated = HmacSha256(KEY_B, (KEY_A,))
    old = HmacSha256(KEY_A).mask("x@example.org")
    assert rotated.candidates("x@example.org") == [rotated.mask("x@example.org"), old]
    assert rotated.mask("x@example.org").startswith("h1:b:")
    assert rotated.check(old) is None  # old values remain valid masked values
    assert HmacSha256(KEY_B).check(old) == "hmac_sha256 value under a key id the policy does not know"
    assert rotated.check("x@example.org") is not None


def test_sha256_is_salted_per_column_and_unkeyed() -> None:
    a, b = Sha256("ks.t.email"), Sha256("ks.t.other")
    assert a.mask("x") == Sha256("ks.t.email").mask("x")
    assert a.mask("x") != b.mask("x")
    assert re.fullmatch(r"[0-9a-f]{64}", a.mask("x"))
    import hashlib

    assert a.mask("x") != hashlib.sha256(b"x").hexdigest()  # not a plain rainbow-table hash


@given(texts)
def test_tokens_depend_on_the_vault_key_and_open_only_with_it(x: str) -> None:
    a, b = VaultCipher(KEY_A), VaultCipher(KEY_B)
    token = a.token(x)
    assert re.fullmatch(r"tok_[0-9a-f]{32}", token)
    assert token == VaultCipher(KEY_A).token(x) != b.token(x)
    entry = a.seal(token, x)
    if len(x.encode()) >= 4:  # shorter byte strings may occur in random ciphertext by chance
        assert x.encode() not in entry.ciphertext
    assert a.open(entry) == x


def test_a_sealed_entry_does_not_open_with_another_key_or_token() -> None:
    from cdc_platform.masking.errors import VaultKeyError

    a = VaultCipher(KEY_A)
    entry = a.seal(a.token("secret"), "secret")
    with pytest.raises(VaultKeyError) as err:
        VaultCipher(SecretKey("a", b"Z" * 32, "test")).open(entry)
    assert "secret" not in str(err.value).replace(entry.token, "")
    import dataclasses

    with pytest.raises(VaultKeyError):
        a.open(dataclasses.replace(entry, token=a.token("other")))  # the token is authenticated


@given(st.text(min_size=0, max_size=30), st.integers(0, 8))
def test_partial_keeps_length_and_at_most_half_of_the_tail(x: str, n: int) -> None:
    masked = Partial(n, False).mask(x)
    kept = min(n, len(x) // 2)
    assert len(masked) == len(x)
    assert masked[len(x) - kept :] == x[len(x) - kept :]
    assert set(masked[: len(x) - kept]) <= {"*"}
    assert Partial(n, False).check(masked) is None


def test_partial_examples() -> None:
    assert Partial(4, False).mask("+49 30 1234567") == "**********4567"
    assert Partial(4, False).mask("1234") == "**34"  # never more than half
    assert Partial(0, True).mask("ada.lovelace@example.com") == "************@example.com"
    assert Partial(0, True).mask("no-at-sign") == "**********"
    assert Partial(0, True).check("ada@example.com") == "partial value with unmasked characters"
    assert Partial(4, False).check("**********4567") is None


@given(st.integers(-1_000_000, 1_000_000))
def test_generalized_dates_are_the_first_of_their_month(days: int) -> None:
    g = Generalize("date")
    out = g.mask(days)
    y, m, _d = civil_from_days(days)
    assert civil_from_days(out) == (y, m, 1)
    assert g.mask(out) == out and g.check(out) is None
    assert Generalize("date", to="year").mask(days) == days_from_civil(y, 1, 1)


def test_generalize_keeps_the_python_type_of_each_cql_type() -> None:
    ms = int(dt.datetime(2026, 3, 17, 13, 5, 9, 123000, tzinfo=dt.UTC).timestamp() * 1000)
    out = Generalize("timestamp").mask(ms)
    assert isinstance(out, int)
    assert dt.datetime.fromtimestamp(out / 1000, dt.UTC) == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert Generalize("timestamp").check(ms) == "timestamp not at the start of the month"
    assert Generalize("int", width=10).mask(47) == 40
    assert Generalize("int", width=10).mask(-1) == -10
    assert Generalize("tinyint", width=100).mask(-101) == -128  # the range's bound, clamped to the type
    assert Generalize("varint", width=1000).mask(10**30 + 5) == 10**30
    d = Generalize("decimal", width=Decimal("0.5")).mask(Decimal("12.34"))
    assert isinstance(d, Decimal) and d == Decimal("12.0")
    assert Generalize("double", width=0.25).mask(0.6) == 0.5
    assert math.isnan(Generalize("double", width=0.25).mask(math.nan))
    v4 = Generalize("inet").mask(ipaddress.IPv4Address("192.0.2.77"))
    assert v4 == ipaddress.IPv4Address("192.0.2.0")
    v6 = Generalize("inet").mask(ipaddress.IPv6Address("2001:db8:1:2:3:4:5:6"))
    assert v6 == ipaddress.IPv6Address("2001:db8:1::")
    assert Generalize("inet").check(ipaddress.IPv4Address("192.0.2.77")) is not None


@given(st.integers(-(2**31), 2**31 - 1), st.integers(1, 10_000))
def test_generalized_ints_are_range_lower_bounds(v: int, width: int) -> None:
    out = Generalize("int", width=width).mask(v)
    assert -(2**31) <= out <= v
    assert out == -(2**31) or (out % width == 0 and v - out < width)


def test_redact_gives_null_or_the_fixed_text() -> None:
    assert Redact(None).mask("anything") is None
    assert Redact("[x]").mask("anything") == "[x]"
    assert Redact(None).check("leak") == "not redacted (expected null)"
    assert Redact("[x]").check("[x]") is None
