"""``java_float_string`` against JDK 17's ``Double.toString`` / ``Float.toString``.

Cassandra runs on JDK 8, 11 or 17, whose ``FloatingDecimal`` prints more or other digits than
the shortest round-trip form for about 4% of doubles. The table below was taken from JDK 17
and covers each path of its ``dtoa``; the oracle test runs the installed JDK when there is one.
"""

from __future__ import annotations

import math
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from cdc_platform.schema.java_float import java_float_string

_F64 = struct.Struct(">d")
_U64 = struct.Struct(">Q")
_F32 = struct.Struct(">f")
_U32 = struct.Struct(">I")


def _double(bits: int) -> float:
    return _F64.unpack(_U64.pack(bits))[0]


def _float(bits: int) -> float:
    return _F32.unpack(_U32.pack(bits))[0]


def _double_bits(value: float) -> int:
    return _U64.unpack(_F64.pack(value))[0]


def _float_bits(value: float) -> int:
    return _U32.unpack(_F32.pack(value))[0]


# (kind, IEEE bits, JDK 17 output): "d" for Double.toString, "f" for Float.toString.
_JDK17_CASES = [
    # developLongDigits: integers below 2**63, digits past the precision rounded half up.
    ("d", 0xC381E88F38C0C8FD, "-1.61304845894623136E17"),
    ("d", 0xC3B2CCCF744AB1FC, "-1.35468568630801101E18"),  # rounds the kept digits up
    ("d", 0x419D6F3454000000, "1.23456789E8"),
    ("d", 0x4340000000000000, "9.007199254740992E15"),  # 2**53, exact
    ("d", 0x416312D000000000, "1.0E7"),
    ("f", 0xD8D511F2, "-1.87418441E15"),
    ("f", 0x50BA43B7, "2.49999995E10"),  # 2.5e10f
    ("f", 0x4B189680, "1.0E7"),
    ("f", 0x4B18967F, "9999999.0"),
    # long path: E-form forces a second digit (2e23), estimate one too high (1e23).
    ("d", 0x44C52D02C7E14AF6, "1.9999999999999998E23"),
    ("d", 0x44B52D02C7E14AF6, "9.999999999999999E22"),
    ("d", 0x43E0000000000000, "9.223372036854776E18"),  # 2**63
    ("d", 0xC2CE6F447ED4D57B, "-6.692647873169096E13"),
    ("d", 0x43ED760A92CC8A34, "1.6983167199719039E19"),
    ("d", 0x4301B66687B7ABB6, "6.232032604952228E14"),  # tie: even last digit
    ("d", 0x42D6BCC41E8FFFF8, "9.999999999999988E13"),  # tie, estimate one too high
    ("d", 0x3FB999999999999A, "0.1"),
    # long path, m overflowing the long: wrapped sum, and the m <= 0 guard.
    ("d", 0xC537C11F56E5A34B, "-2.8717288692986996E25"),
    ("d", 0x4539537801191DFD, "3.0617315596860195E25"),
    ("d", 0xBF711B72FA5061E1, "-0.0041765681571850075"),
    ("d", 0x3F61B20000000000, "0.0021600723266601562"),
    ("f", 0xEA68AD74, "-7.0322474E25"),
    ("f", 0xE8FE22D6, "-9.6009895E24"),
    # int path (floats only: a double's half-ULP needs 53 more bits than an int has).
    ("f", 0xBE0A5355, "-0.13508351"),
    ("f", 0x48ACEFF4, "354175.62"),  # tie
    ("f", 0x3D040000, "0.032226562"),  # tie, m overflowing the int
    ("f", 0x3DCCCCCD, "0.1"),
    # FDBigInteger path, including the power-of-two half-ULP hack.
    ("d", 0x1420000000000000, "9.505457831475799E-212"),
    ("d", 0x0060000000000000, "7.1202363472230444E-307"),
    ("d", 0x0010000000000000, "2.2250738585072014E-308"),  # Double.MIN_NORMAL
    ("d", 0x7FEFFFFFFFFFFFFF, "1.7976931348623157E308"),  # Double.MAX_VALUE
    ("f", 0x77385666, "3.7388086E33"),
    ("f", 0x00800000, "1.17549435E-38"),  # Float.MIN_NORMAL
    ("f", 0x7F7FFFFF, "3.4028235E38"),  # Float.MAX_VALUE
    # Subnormals; 1.0E-321 carries out of its first digit in roundup.
    ("d", 0x0000000000000001, "4.9E-324"),  # Double.MIN_VALUE
    ("d", 0x0000000000000002, "1.0E-323"),
    ("d", 0x00000000000000CA, "1.0E-321"),
    ("d", 0x000FFFFFFFFFFFFF, "2.225073858507201E-308"),
    ("f", 0x00000001, "1.4E-45"),  # Float.MIN_VALUE
    ("f", 0x00000010, "2.24E-44"),
    ("f", 0x00000047, "1.0E-43"),
    ("f", 0x007FFFFF, "1.1754942E-38"),
    # Layout switches at 1e-3 and 1e7.
    ("d", 0x3F50624DD2F1A9FC, "0.001"),
    ("d", 0x3F50624DD2F1A9FB, "9.999999999999998E-4"),
    ("d", 0x416312CFFFFFFFFF, "9999999.999999998"),
    ("d", 0x3F1A36E2EB1C432D, "1.0E-4"),
    ("f", 0x3A83126F, "0.001"),
    ("f", 0x3A83126E, "9.999999E-4"),
]


@pytest.mark.parametrize(
    ("kind", "bits", "expected"),
    [pytest.param(kind, bits, expected, id=f"{kind}-{bits:X}") for kind, bits, expected in _JDK17_CASES],
)
def test_matches_jdk17_output(kind: str, bits: int, expected: str) -> None:
    if kind == "d":
        assert java_float_string(_double(bits), single=False) == expected
        assert java_float_string(_double(bits | 1 << 63), single=False) == "-" + expected.lstrip("-")
    else:
        assert java_float_string(_float(bits), single=True) == expected
        assert java_float_string(_float(bits | 1 << 31), single=True) == "-" + expected.lstrip("-")


@pytest.mark.parametrize("single", [False, True])
def test_zero_and_non_finite_values_print_as_java_does(single: bool) -> None:
    assert java_float_string(0.0, single=single) == "0.0"
    assert java_float_string(-0.0, single=single) == "-0.0"
    assert java_float_string(math.nan, single=single) == "NaN"
    assert java_float_string(math.inf, single=single) == "Infinity"
    assert java_float_string(-math.inf, single=single) == "-Infinity"


# --------------------------------------------------------------------------------------------
# The installed JDK as oracle

_ORACLE_SOURCE = """
import java.io.*;

public class ToStringOracle {
  public static void main(String[] args) throws IOException {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
    PrintWriter out = new PrintWriter(new BufferedWriter(new OutputStreamWriter(System.out)));
    for (String line; (line = in.readLine()) != null; ) {
      long bits = Long.parseUnsignedLong(line.substring(2), 16);
      out.println(line.charAt(0) == 'f'
          ? Float.toString(Float.intBitsToFloat((int) bits))
          : Double.toString(Double.longBitsToDouble(bits)));
    }
    out.flush();
  }
}
"""


def _oracle_cases(rng: random.Random) -> list[tuple[str, int]]:
    """About 40,000 doubles and floats over every dtoa path and both layout switches."""
    cases: list[tuple[str, int]] = []

    def add_double(value: float) -> None:
        if math.isfinite(value) and value != 0:
            cases.append(("d", _double_bits(value)))

    def add_float(value: float) -> None:
        try:
            bits = _float_bits(value)
        except OverflowError:
            return
        if bits & 0x7F800000 != 0x7F800000 and bits & 0x7FFFFFFF:
            cases.append(("f", bits))

    for _ in range(8000):
        add_double(_double(rng.getrandbits(64)))
        add_float(_float(rng.getrandbits(32)))
    for _ in range(2000):
        add_double(_double(rng.getrandbits(52) >> rng.randrange(52)))  # subnormal
        add_float(_float(rng.getrandbits(23) >> rng.randrange(23)))
    for _ in range(4000):
        scale = 10 ** rng.randrange(0, 9)
        add_double(round(rng.uniform(-scale, scale), rng.randrange(0, 9)))
        add_float(round(rng.uniform(-scale, scale), rng.randrange(0, 7)))
    for _ in range(3000):
        add_double(float(f"{rng.randrange(1, 10 ** rng.randrange(1, 18))}e{rng.randrange(-330, 300)}"))
        add_float(float(f"{rng.randrange(1, 10 ** rng.randrange(1, 10))}e{rng.randrange(-45, 38)}"))
        add_double(float(rng.randrange(1, 1 << rng.randrange(1, 80))))  # large integers
        add_float(float(rng.randrange(1, 1 << rng.randrange(1, 70))))
    for exponent in range(-1074, 1024):
        add_double(-(2.0**exponent))
    for exponent in range(-149, 128):
        add_float(2.0**exponent)
    for center in (1e-3, 1e7):
        double_bits, float_bits = _double_bits(center), _float_bits(center)
        for delta in range(-500, 501):
            cases.append(("d", double_bits + delta))
            cases.append(("f", float_bits + delta))
    return cases


def test_matches_installed_jdk(tmp_path: Path) -> None:
    java = shutil.which("java")
    if java is None:
        pytest.skip("no `java` on PATH: the JDK oracle needs a JDK 8-17 (the table test still runs)")
    version = subprocess.run([java, "-version"], capture_output=True, text=True, check=True).stderr
    if not any(f'version "{v}' in version for v in ("1.8", "11", "17")):
        pytest.skip(f"the oracle needs JDK 8, 11 or 17 (JDK 19+ prints the shortest digits): {version}")
    source = tmp_path / "ToStringOracle.java"
    source.write_text(_ORACLE_SOURCE)
    cases = _oracle_cases(random.Random(20_250_601))
    stdin = "".join(f"{kind} {bits:x}\n" for kind, bits in cases)
    result = subprocess.run(
        [java, str(source)], input=stdin, capture_output=True, text=True, check=True, timeout=120
    )
    expected = result.stdout.splitlines()
    assert len(expected) == len(cases)
    mismatches = []
    for (kind, bits), want in zip(cases, expected, strict=True):
        value = _float(bits) if kind == "f" else _double(bits)
        got = java_float_string(value, single=kind == "f")
        if got != want:
            mismatches.append(f"{kind} {bits:#x}: JDK {want}, ours {got}")
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ, e.g. {mismatches[:10]}"
