"""Java's ``Float.toString`` / ``Double.toString`` as JDK 8-17 print them (``toJson()`` of float and double).

Float and double digits follow JDK 8-17's ``FloatingDecimal`` exactly, not the shortest
round-trip form of JDK 19+: those JDKs print extra digits for large integers
(``1.61304845894623136E17``), a second digit in E-form (``1.9999999999999998E23`` for
``2e23``) and other digits where their int/long arithmetic overflows
(``-2.8717288692986996E25``). Checked against JDK 17 over 2.7 million doubles and 1.3
million floats without a difference.
"""

from __future__ import annotations

import math
import struct
from functools import lru_cache

# Java 8-17 ``Double.toString`` / ``Float.toString`` (``jdk.internal.math.FloatingDecimal``):
# ``_dtoa`` develops the digits with the same integer arithmetic, stopping tests and final
# rounding, so that every quirk of that algorithm (extra digits for large integers, the
# forced second digit in E-form, the narrower interval at powers of two, int/long overflow
# of the half-ULP) is reproduced. Python ints stand in for FDBigInteger; Java's int and long
# paths differ from it only in the ``high`` test (``>`` instead of ``>=``) and where their
# fixed-width arithmetic wraps, which ``_digits_fixed_width`` reproduces.

_F32 = struct.Struct(">f")
_D64 = struct.Struct(">d")
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")

_DOUBLE_FRACTION_MASK = (1 << 52) - 1
_DOUBLE_HIDDEN_BIT = 1 << 52
_FLOAT_FRACTION_MASK = (1 << 23) - 1
_FLOAT_HIDDEN_BIT = 1 << 23
# dtoa works on a double's significand; a float's is shifted into the same position.
_FLOAT_TO_DOUBLE_SHIFT = 52 - 23

# FloatingDecimal.N_5_BITS, which picks the int / long / FDBigInteger path: the bit length
# of 5**i for i < 27 (0 for i = 0); beyond it Java counts 3 bits per power of five.
_N_5_BITS = (0, *((5**i).bit_length() for i in range(1, 27)))
_POW5 = tuple(5**i for i in range(1100))
# Powers of ten for skipped and insignificant digits: at most 17 of either (s / m stays
# below 10 * 2**54, and bin_exp <= 62 bounds the insignificant digits).
_POW10 = tuple(10**i for i in range(18))
_INT_MIN = -(1 << 31)
_LONG_MIN = -(1 << 63)
_floor = math.floor


def java_float_string(value: float, *, single: bool) -> str:
    """Java's ``Float.toString`` (``single``) / ``Double.toString`` as JDK 8-17 print them.

    These are the JDKs every Cassandra release runs on; JDK 19+ prints the shortest
    round-trip digits instead, which differ for about 4% of doubles.

    Args:
        value: the number; with ``single`` it is rounded to the nearest float32 first (the
            decoder only produces float32 values there, so this is exact in practice).
        single: format as a Java ``float`` rather than a ``double``.

    Returns:
        The text Java prints, e.g. ``1.0E10``, ``0.001``, ``1.61304845894623136E17``;
        ``NaN``, ``Infinity`` and ``-Infinity`` for the non-finite values.
    """
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    if value != value:
        return "NaN"
    if single:
        try:
            bits = _U32.unpack(_F32.pack(value))[0]
        except OverflowError:
            bits = 0x7F800000 | (0x80000000 if value < 0 else 0)
        negative = bits >> 31
        biased_exp = (bits >> 23) & 0xFF
        fraction = bits & _FLOAT_FRACTION_MASK
        if biased_exp == 0xFF:
            return "-Infinity" if negative else "Infinity"
        if biased_exp:
            digits, dec_exponent = _dtoa(
                biased_exp - 127, (fraction | _FLOAT_HIDDEN_BIT) << _FLOAT_TO_DOUBLE_SHIFT, 24
            )
        else:
            # Subnormal: normalised so that its leading one sits at the hidden bit.
            shift = 24 - fraction.bit_length()
            digits, dec_exponent = _dtoa(
                -126 - shift, fraction << (shift + _FLOAT_TO_DOUBLE_SHIFT), fraction.bit_length()
            )
    else:
        bits = _U64.unpack(_D64.pack(value))[0]
        negative = bits >> 63
        biased_exp = (bits >> 52) & 0x7FF
        fraction = bits & _DOUBLE_FRACTION_MASK
        if biased_exp == 0x7FF:
            return "-Infinity" if negative else "Infinity"
        if biased_exp:
            digits, dec_exponent = _dtoa(biased_exp - 1023, fraction | _DOUBLE_HIDDEN_BIT, 53)
        else:
            shift = 53 - fraction.bit_length()
            digits, dec_exponent = _dtoa(-1022 - shift, fraction << shift, fraction.bit_length())
    return _java_layout("-" if negative else "", digits, dec_exponent)


def _dtoa(bin_exp: int, fract_bits: int, n_significant_bits: int) -> tuple[str, int]:
    """``FloatingDecimal.BinaryToASCIIBuffer.dtoa`` in its ``toString`` mode.

    Args:
        bin_exp: unbiased binary exponent of the leading one.
        fract_bits: the significand with its leading one at bit 52 (floats shifted there).
        n_significant_bits: significand width (53, 24, or fewer for subnormals), which sets
            the half-ULP the stopping tests use.

    Returns:
        ``(digits, dec_exponent)`` with value ≈ ``0.digits × 10**dec_exponent``; ``digits``
        may end in zeros, which Java prints.
    """
    tail_zeros = (fract_bits & -fract_bits).bit_length() - 1
    n_fract_bits = 53 - tail_zeros
    if n_fract_bits <= bin_exp + 1 and bin_exp <= 62:
        # No bits right of the binary point: an integer that fits a long.
        return _develop_long_digits(bin_exp, fract_bits, n_significant_bits)
    dec_exp = _estimate_dec_exp(fract_bits, bin_exp)
    b_factor, b_shift, s, m, width_min, skip = _scales(bin_exp, n_fract_bits, n_significant_bits, dec_exp)
    b = (fract_bits >> tail_zeros) * b_factor << b_shift
    if width_min:
        return _digits_fixed_width(b, s, m, dec_exp, skip, width_min)
    return _digits_big(b, s, m, dec_exp, skip)


@lru_cache(maxsize=4096)
def _scales(
    bin_exp: int, n_fract_bits: int, n_significant_bits: int, dec_exp: int
) -> tuple[int, int, int, int, int, int]:
    """Java's integer scaling of a value with this exponent and significand width.

    The value is ``(b / s) * 10**dec_exp`` and ``m`` half an ULP on ``b``'s scale, each a
    power of five times a power of two, with the common power of two removed as Java does.

    Returns:
        ``(b_factor, b_shift, s, m, width_min, skip)``: ``b`` is the odd significand times
        ``b_factor`` shifted left by ``b_shift``; ``width_min`` is ``Integer.MIN_VALUE`` or
        ``Long.MIN_VALUE`` for Java's int and long paths, 0 for its FDBigInteger path;
        ``skip`` bounds the digits :func:`_skip_digits` may develop at once.
    """
    # Bits right of the binary point.
    n_tiny_bits = max(0, n_fract_bits - bin_exp - 1)
    b5 = max(0, -dec_exp)
    b2 = b5 + n_tiny_bits + bin_exp - (n_fract_bits - 1)
    s5 = max(0, dec_exp)
    s2 = s5 + n_tiny_bits
    m2 = b5 + n_tiny_bits + bin_exp - n_significant_bits
    common2 = min(b2, s2)
    b2 -= common2
    s2 -= common2
    m2 -= common2
    if n_fract_bits == 1:
        # A power of two: the gap below is half the ULP, and Java uses half of it on both
        # sides (its stopping tests are symmetric).
        m2 -= 1
    if m2 < 0:
        b2 -= m2
        s2 -= m2
        m2 = 0
    s = _POW5[s5] << s2
    m = _POW5[b5] << m2
    b_bits = n_fract_bits + b2 + (_N_5_BITS[b5] if b5 < len(_N_5_BITS) else b5 * 3)
    ten_s_bits = s2 + 1 + (_N_5_BITS[s5 + 1] if s5 + 1 < len(_N_5_BITS) else (s5 + 1) * 3)
    width_min = 0
    if b_bits < 64 and ten_s_bits < 64:
        width_min = _INT_MIN if b_bits < 32 and ten_s_bits < 32 else _LONG_MIN
    # After the first digit m is 10 m and the loop compares it with 10 s.
    skip = len(str(s // m)) - 1
    return _POW5[b5], b2, s, m, width_min, skip


def _develop_long_digits(bin_exp: int, fract_bits: int, n_significant_bits: int) -> tuple[str, int]:
    """``developLongDigits``: an integer below 2**63, its digits beyond the precision rounded half up."""
    value = fract_bits << (bin_exp - 52) if bin_exp >= 52 else fract_bits >> (52 - bin_exp)
    dec_exponent = 0
    if bin_exp > n_significant_bits:
        # ``insignificantDigitsForPow2``: as many digits as 2**(bin_exp - n_significant_bits
        # - 1), a quarter of the ULP, has beyond its first are dropped.
        insignificant = len(str(1 << (bin_exp - n_significant_bits - 1))) - 1
        if insignificant:
            pow10 = _POW10[insignificant]
            value, residue = divmod(value, pow10)
            if residue >= pow10 >> 1:
                value += 1
            dec_exponent = insignificant
    text = str(value)
    return text.rstrip("0"), dec_exponent + len(text)


def _estimate_dec_exp(fract_bits: int, bin_exp: int) -> int:
    """``estimateDecExp``: floor of a linear estimate of log10, in the same double arithmetic.

    It is exact or one too high; the digit loops drop a leading zero digit in the latter case.
    """
    # 1.fraction, exactly: 52 fraction bits scaled into [1, 2).
    d2 = 1.0 + (fract_bits & _DOUBLE_FRACTION_MASK) / _DOUBLE_HIDDEN_BIT
    return _floor((d2 - 1.5) * 0.289529654 + 0.176091259 + bin_exp * 0.301029995663981)


def _digits_big(b: int, s: int, m: int, dec_exp: int, skip: int) -> tuple[str, int]:
    """The FDBigInteger digit loop: exact arithmetic, ``high`` when ``b + m >= 10 s``."""
    tens = s * 10
    q, b = divmod(b, s)
    b *= 10
    m *= 10
    low = b < m
    high = b + m >= tens
    if q == 0 and not high:
        # The exponent estimate was one too high.
        dec_exp -= 1
        acc, n_digits = 0, 0
    else:
        acc, n_digits = q, 1
    if dec_exp < -3 or dec_exp >= 8:
        # E-form: at least two digits, so the first digit's stopping tests are ignored.
        low = high = False
    elif low or high:
        return _round_last_digit(acc, n_digits, dec_exp, low, high, 2 * b - tens)
    skipped = _skip_digits(b, s, skip)
    if skipped is not None:
        q, n_skipped, b = skipped
        acc = acc * _POW10[n_skipped] + q
        n_digits += n_skipped
        m *= _POW10[n_skipped]
        low = b < m
        high = b + m >= tens
    while not low and not high:
        q, b = divmod(b, s)
        b *= 10
        m *= 10
        low = b < m
        high = b + m >= tens
        acc = acc * 10 + q
        n_digits += 1
    return _round_last_digit(acc, n_digits, dec_exp, low, high, 2 * b - tens)


def _digits_fixed_width(b: int, s: int, m: int, dec_exp: int, skip: int, width_min: int) -> tuple[str, int]:
    """The int / long digit loop: ``high`` when ``b + m > 10 s``, with ``m`` and ``b + m``
    wrapping at Java's width (``width_min`` is ``Integer.MIN_VALUE`` or ``Long.MIN_VALUE``).

    ``b`` stays below ``10 s``, which fits the width, so only ``m`` (times ten each digit)
    and ``b + m`` can wrap, and ``2 b - 10 s`` in the final rounding is exact.
    """
    tens = s * 10
    q, b = divmod(b, s)
    b *= 10
    m *= 10
    # Nothing wraps at the first digit: only normal numbers take these paths, so m (ten
    # half-ULPs) is below 10 * 2**width / 2**24, and every 10 s that fits the width (a power
    # of five times a power of two) is further than that below its limit.
    low = b < m
    high = b + m > tens
    if q == 0 and not high:
        dec_exp -= 1
        acc, n_digits = 0, 0
    else:
        acc, n_digits = q, 1
    if dec_exp < -3 or dec_exp >= 8:
        low = high = False
    elif low or high:
        return _round_last_digit(acc, n_digits, dec_exp, low, high, 2 * b - tens)
    skipped = _skip_digits(b, s, skip)
    if skipped is not None:
        q, n_skipped, b = skipped
        acc = acc * _POW10[n_skipped] + q
        n_digits += n_skipped
        # m <= 10 s after a skip, so only the sum can wrap.
        m *= _POW10[n_skipped]
        low = b < m
        high = _wrap(b + m, width_min) > tens
    while not low and not high:
        q, b = divmod(b, s)
        b *= 10
        m = _wrap(m * 10, width_min)
        if m > 0:
            low = b < m
            high = _wrap(b + m, width_min) > tens
        else:
            # Java's guard for an overflowed m: stop here.
            low = high = True
        acc = acc * 10 + q
        n_digits += 1
    return _round_last_digit(acc, n_digits, dec_exp, low, high, 2 * b - tens)


def _wrap(value: int, width_min: int) -> int:
    """``value`` as Java's two's-complement arithmetic of that width leaves it."""
    if width_min <= value < -width_min:
        return value
    return (value - width_min) % (-2 * width_min) + width_min


def _skip_digits(b: int, s: int, count: int) -> tuple[int, int, int] | None:
    """Develops at once the next digits whose stopping tests cannot pass.

    With ``m * 10**count <= 10 s``, a test before the ``count``-th next digit can only pass
    when the digits after it up to that one are all 0 (remainder below ``m``) or all 9
    (remainder within ``m`` of ``10 s``). So every digit up to the last one that is neither
    0 nor 9 comes from one division without skipping a test that could pass. ``m`` and
    ``b + m`` stay below ``10 s`` in the skipped steps, so nothing would have wrapped there.

    Returns:
        ``(digits, n_digits, b)`` as the loop leaves them after ``n_digits`` more digits
        (``digits`` may have leading zeros; ``m`` is to be scaled by ``10**n_digits``), or
        ``None`` when fewer than two digits qualify.
    """
    if count < 2:
        return None
    digits, rem = divmod(b * _POW10[count - 1], s)
    text = str(digits)
    kept = text.rstrip("09")
    if not kept:
        return None
    dropped = len(text) - len(kept)
    if dropped:
        count -= dropped
        if count < 2:
            return None
        digits //= _POW10[dropped]
        rem = b * _POW10[count - 1] - digits * s
    return digits, count, rem * 10


def _round_last_digit(
    acc: int, n_digits: int, dec_exp: int, low: bool, high: bool, twice_b_minus_tens: int
) -> tuple[str, int]:
    """Java's final rounding of the developed digits and its ``roundup``.

    Rounds up when only ``high`` passed, or both did and the remainder is over half a unit
    of the last digit (at exactly half, to an even digit). The ``n_digits`` digits of ``acc``
    are kept, a leading zero included; a carry out of the first digit gives ``1`` followed
    by zeros and bumps the exponent, as ``roundup`` does.
    """
    if high and (not low or twice_b_minus_tens > 0 or (twice_b_minus_tens == 0 and acc & 1)):
        acc += 1
    text = str(acc)
    if len(text) > n_digits:
        return text[:n_digits], dec_exp + 2
    return text.zfill(n_digits), dec_exp + 1


def _java_layout(sign: str, digits: str, dec_exponent: int) -> str:
    """``BinaryToASCIIBuffer.getChars``: plain for 1e-3 <= |x| < 1e7, else ``d.dddE±n``."""
    if 0 < dec_exponent < 8:
        int_part = digits[:dec_exponent]
        if len(int_part) < dec_exponent:
            return f"{sign}{int_part}{'0' * (dec_exponent - len(int_part))}.0"
        return f"{sign}{int_part}.{digits[dec_exponent:] or '0'}"
    if -3 < dec_exponent <= 0:
        return f"{sign}0.{'0' * -dec_exponent}{digits}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{dec_exponent - 1}"
