"""Destination identifiers for Cassandra names.

Any Cassandra name (quoted, mixed case, unicode, reserved words, quotes inside) maps to a
destination identifier that is always used quoted (never spliced into SQL text unquoted),
fits the engine's length limit and cannot collide with the columns the platform adds:

- a value column keeps the Cassandra name, except that names starting with ``_cdc_`` get
  the prefix ``_cdc_col_`` (so metadata columns, all starting with ``_cdc_`` but never with
  ``_cdc_col_``, cannot be shadowed);
- per-column state columns are ``_cdc_v:<name>`` (cell version) and ``_cdc_c:<name>``
  (collection state);
- names longer than the limit are cut and suffixed with a hash of the full name.
"""

from __future__ import annotations

import hashlib

META_PREFIX = "_cdc_"
ESCAPE = "_cdc_col_"


def _fit(name: str, limit: int) -> str:
    raw = name.encode("utf-8")
    if len(raw) <= limit:
        return name
    digest = hashlib.sha1(raw).hexdigest()[:10]
    cut = raw[: limit - 11].decode("utf-8", "ignore")
    return f"{cut}~{digest}"


def value_column(name: str, limit: int = 63) -> str:
    """The destination column holding a Cassandra column's value."""
    return _fit(ESCAPE + name if name.startswith(META_PREFIX) else name, limit)


def version_column(name: str, limit: int = 63) -> str:
    return _fit(f"_cdc_v:{name}", limit)


def collection_column(name: str, limit: int = 63) -> str:
    return _fit(f"_cdc_c:{name}", limit)


def table_name(name: str, suffix: str = "", limit: int = 63) -> str:
    """A destination table for a Cassandra table (Cassandra table names are ``\\w+``; ``$`` marks ours)."""
    return _fit(name, limit - len(suffix)) + suffix


def check_unique(names: list[str], what: str) -> None:
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    dupes = [n for n, c in seen.items() if c > 1]
    if dupes:
        raise ValueError(f"{what}: destination names collide after shortening: {dupes}")
