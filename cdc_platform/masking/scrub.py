"""Scrubbing free text (log lines, error messages, Dagster metadata) of masked plaintexts.

The policy remembers, in a bounded least-recently-used map, the plaintexts it masked in this
process and their masked forms; :meth:`TextScrubber.scrub` replaces every occurrence of a
remembered plaintext in a text by its masked form. Plaintexts shorter than ``min_length``
are not remembered (replacing every ``42`` in a log line would make logs unreadable and
protects nothing); the text renderings a log line may carry are remembered too (ISO dates,
``toJson()`` timestamps, JSON-escaped strings, ``0x…`` raw bytes).
"""

from __future__ import annotations

import decimal
import ipaddress
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from cdc_platform.schema.render import format_date, format_inet, format_timestamp, quote_json_string
from cdc_platform.schema.types import CqlType, NativeType
from cdc_platform.schema.values import InvalidValue

REDACTED = "[REDACTED]"


def renderings(cql_type: CqlType, value: Any) -> list[str]:
    """The texts a value of ``cql_type`` shows up as in logs and messages."""
    if value is None:
        return []
    if isinstance(value, (InvalidValue, bytes)):
        raw = value.raw if isinstance(value, InvalidValue) else value
        text = raw.decode("utf-8", "ignore")
        return ["0x" + raw.hex(), text] if text else ["0x" + raw.hex()]
    name = cql_type.name if isinstance(cql_type, NativeType) else None
    if isinstance(value, str):
        quoted = quote_json_string(value)[1:-1]
        return [value] if quoted == value else [value, quoted]
    if name == "date" and isinstance(value, int):
        return [format_date(value)]
    if name == "timestamp" and isinstance(value, int):
        text = format_timestamp(value)
        return [text, text[:19], text[:10]]
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return list(dict.fromkeys([str(value), format_inet(value)]))
    if isinstance(value, (int, float, decimal.Decimal)):
        return [str(value)]
    return []


def masked_text(cql_type: CqlType, value: Any) -> str:
    """How a masked value replaces its plaintext in a text."""
    shown = renderings(cql_type, value)
    return shown[0] if shown else REDACTED


class TextScrubber:
    """Bounded memory of plaintext → masked text, and the replacement over free text.

    Args:
        capacity: plaintexts remembered (least recently masked forgotten first).
        min_length: shorter plaintexts are not remembered.
    """

    def __init__(self, capacity: int = 10_000, min_length: int = 4) -> None:
        self.capacity = capacity
        self.min_length = min_length
        self._seen: OrderedDict[str, str] = OrderedDict()
        # The pattern and a snapshot of the map it was built from, rebuilt after changes.
        self._compiled: tuple[re.Pattern[str], dict[str, str]] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TextScrubber({len(self._seen)} remembered, capacity={self.capacity})"  # never the texts

    def __len__(self) -> int:
        return len(self._seen)

    def remember(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Remembers (plaintext, masked) pairs."""
        with self._lock:
            seen = self._seen
            changed = False
            for plain, masked in pairs:
                if len(plain) < self.min_length or plain == masked:
                    continue
                if plain in seen:
                    seen.move_to_end(plain)
                    if seen[plain] == masked:
                        continue
                seen[plain] = masked
                changed = True
            while len(seen) > self.capacity:
                seen.popitem(last=False)
                changed = True
            if changed:
                self._compiled = None

    def scrub(self, text: str) -> str:
        """``text`` with every remembered plaintext replaced by its masked form."""
        with self._lock:
            if not self._seen or not text:
                return text
            if self._compiled is None:
                # Longest first, so a plaintext containing another is replaced whole.
                alternatives = sorted(self._seen, key=len, reverse=True)
                self._compiled = (re.compile("|".join(map(re.escape, alternatives))), dict(self._seen))
            pattern, seen = self._compiled
        return pattern.sub(lambda m: seen[m.group(0)], text)
