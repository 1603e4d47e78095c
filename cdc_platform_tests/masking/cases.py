"""A table with PII in every position a change can carry it, its rules and test keys."""

from __future__ import annotations

import dataclasses
import ipaddress
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from cdc_platform.changes.records import ClusteringBound, RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.masking import MaskingPolicy, MemoryTokenVault, SecretSource
from cdc_platform.masking.vault import TokenStore
from cdc_platform.schema.cql import parse_schema
from cdc_platform.schema.values import InvalidValue

SCHEMA_CQL = """
CREATE KEYSPACE pii WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
CREATE TYPE pii.contact (email text, phone text, since date, "Nick" text);
CREATE TABLE pii.people (
    tenant text,
    email text,
    handle text,
    static_email text static,
    name text,
    code ascii,
    born date,
    visited timestamp,
    score int,
    tiny tinyint,
    balance decimal,
    ratio double,
    ip inet,
    note text,
    raw blob,
    contact frozen<contact>,
    live_contact contact,
    emails list<text>,
    aliases set<text>,
    phones map<text, text>,
    frozen_aliases frozen<set<text>>,
    frozen_phones frozen<map<text, text>>,
    history list<frozen<tuple<text, int>>>,
    lookup map<text, int>,
    kept text,
    PRIMARY KEY ((tenant, email), handle)
) WITH ID = 00000000-0000-1000-8000-0000000000a1;
"""
SCHEMA = parse_schema(SCHEMA_CQL)
PEOPLE = SCHEMA.table("pii.people")

# Test keys: the variables a SecretSource reads (never real secrets).
K1 = "test-key-one-0123456789abcdef"
K0 = "test-key-zero-0123456789abcdef"
VK = "test-vault-key-0123456789abcdef"
ENV = {"T_K1": K1, "T_K0": K0, "T_VK": VK}
KEY_MATERIAL = (K1, K0, VK)

KEYS = {"k1": {"env": "T_K1"}, "k0": {"env": "T_K0"}, "vk": {"env": "T_VK"}}

RULES: dict[str, Any] = {
    "email": {"algorithm": "hmac_sha256"},
    "handle": {"algorithm": "sha256"},
    "static_email": {"algorithm": "hmac_sha256"},
    "name": {"algorithm": "tokenize"},
    "code": {"algorithm": "partial", "keep_last": 2},
    "born": {"algorithm": "generalize"},
    "visited": {"algorithm": "generalize", "to": "year"},
    "score": {"algorithm": "generalize", "width": 10},
    "tiny": {"algorithm": "generalize", "width": 100},
    "balance": {"algorithm": "generalize", "width": "0.5"},
    "ratio": {"algorithm": "generalize", "width": 0.25},
    "ip": {"algorithm": "generalize", "ipv4_prefix": 24, "ipv6_prefix": 48},
    "note": {"algorithm": "redact"},
    "raw": {"algorithm": "redact"},
    "contact.email": {"algorithm": "partial", "keep_domain": True},
    "contact.phone": {"algorithm": "partial", "keep_last": 4},
    "contact.Nick": {"algorithm": "redact", "value": "[nick]"},
    "live_contact.email": {"algorithm": "hmac_sha256"},
    "live_contact.since": {"algorithm": "generalize"},
    "live_contact.phone": {"algorithm": "redact"},
    "emails[]": {"algorithm": "hmac_sha256"},
    "aliases[]": {"algorithm": "sha256"},
    "phones{}": {"algorithm": "hmac_sha256"},
    "phones[]": {"algorithm": "partial", "keep_last": 2},
    "frozen_aliases[]": {"algorithm": "partial", "keep_last": 1},
    "frozen_phones{}": {"algorithm": "tokenize"},
    "frozen_phones[]": {"algorithm": "redact", "value": "x"},
    "history[].0": {"algorithm": "hmac_sha256"},
    "lookup": {"algorithm": "redact"},
}


def config(rules: dict[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "keys": dict(KEYS),
        "hmac": {"key": "k1", "previous_keys": ["k0"]},
        "vault": {"key": "vk"},
        "tables": {"pii.people": RULES if rules is None else rules},
    }
    data.update(sections)
    return data


def policy(
    data: dict[str, Any] | None = None, *, vault: TokenStore | None = None, env: dict[str, str] | None = None
) -> MaskingPolicy:
    return MaskingPolicy.from_dict(
        config() if data is None else data,
        SCHEMA,
        secrets=SecretSource(environ=ENV if env is None else env),
        vault=MemoryTokenVault() if vault is None else vault,
    )


# Plaintexts of the full row: none may survive masking anywhere.
PLAIN = {
    "tenant": "acme",
    "email": "ada.lovelace@example.org",
    "handle": "ada-handle-1815",
    "static_email": "static.person@example.org",
    "name": "Ada Lovelace",
    "code": "SECRETCODE",
    "note": "called about her divorce",
    "contact_email": "grace.hopper@navy.example",
    "contact_phone": "+1 555 0100 7788",
    "nick": "amazing-grace",
    "live_email": "linus.t@kernel.example",
    "live_phone": "+358 40 1234567",
    "list_email": "listed.person@example.org",
    "alias": "alias-margaret-h",
    "phone_label": "home-of-barbara",
    "phone_number": "+44 20 7946 0958",
    "frozen_alias": "frozen-alias-dennis",
    "frozen_label": "office-of-ken",
    "frozen_number": "+1 212 555 0199",
    "history_item": "history-radia-perlman",
    "lookup_key": "lookup-frances-allen",
}
KEY = {"tenant": PLAIN["tenant"], "email": PLAIN["email"]}
BORN = 3652 + 20  # 1980-01-21
VISITED = 1_767_312_000_123  # 2026-01-02T00:00:00.123Z


def full_row(ts: int = 1_000_000, ttl: int | None = None) -> list[RowChange]:
    """One INSERT writing every column, with a static cell."""
    b = UpdateBuilder(PEOPLE, KEY, now=1_700_000_000)
    b.insert(
        {"handle": PLAIN["handle"]},
        {
            "name": PLAIN["name"],
            "code": PLAIN["code"],
            "born": BORN,
            "visited": VISITED,
            "score": 47,
            "tiny": -101,
            "balance": Decimal("12.34"),
            "ratio": 0.6,
            "ip": ipaddress.IPv4Address("192.0.2.77"),
            "note": PLAIN["note"],
            "raw": PLAIN["note"].encode(),
            "contact": {
                "email": PLAIN["contact_email"],
                "phone": PLAIN["contact_phone"],
                "since": BORN,
                "Nick": PLAIN["nick"],
            },
            "live_contact": {"email": PLAIN["live_email"], "phone": PLAIN["live_phone"], "since": BORN},
            "emails": [PLAIN["list_email"]],
            "aliases": [PLAIN["alias"]],
            "phones": [(PLAIN["phone_label"], PLAIN["phone_number"])],
            "frozen_aliases": [PLAIN["frozen_alias"], "zz-other-alias"],
            "frozen_phones": [(PLAIN["frozen_label"], PLAIN["frozen_number"])],
            "history": [(PLAIN["history_item"], 3)],
            "lookup": [(PLAIN["lookup_key"], 1)],
            "kept": "kept as is",
        },
        ts,
        ttl=ttl,
    )
    b.update(None, {"static_email": PLAIN["static_email"]}, ts)
    return list(changes_of_update(b.build()))


def range_delete(ts: int = 2_000_000) -> list[RowChange]:
    b = UpdateBuilder(PEOPLE, KEY, now=1_700_000_000)
    b.delete_range({"handle": PLAIN["handle"]}, {"handle": PLAIN["handle"] + "~"}, ts)
    return list(changes_of_update(b.build()))


def element_removal(ts: int = 3_000_000) -> list[RowChange]:
    b = UpdateBuilder(PEOPLE, KEY, now=1_700_000_000)
    b.remove_elements({"handle": PLAIN["handle"]}, "aliases", [PLAIN["alias"]], ts)
    b2 = UpdateBuilder(PEOPLE, KEY, now=1_700_000_000)
    b2.remove_elements({"handle": PLAIN["handle"]}, "phones", [PLAIN["phone_label"]], ts)
    return list(changes_of_update(b.build())) + list(changes_of_update(b2.build()))


def texts(obj: Any) -> Iterator[str]:
    """Every string (and the text of every byte string) anywhere inside a change or value."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, InvalidValue):
        yield obj.raw.decode("utf-8", "replace")
        yield obj.raw.hex()
    elif isinstance(obj, (bytes, bytearray)):
        yield bytes(obj).decode("utf-8", "replace")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from texts(k)
            yield from texts(v)
    elif isinstance(obj, (list, tuple)):  # CellChange is a tuple
        for v in obj:
            yield from texts(v)
    elif isinstance(obj, ClusteringBound):
        yield from texts(obj.clustering)
    elif isinstance(obj, RowChange):
        for f in dataclasses.fields(obj):
            yield from texts(getattr(obj, f.name))
    elif isinstance(obj, (uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        yield str(obj)


def leaked(obj: Any, plaintexts: Any = None) -> set[str]:
    """The plaintexts (default: :data:`PLAIN` except the unmasked tenant) found inside ``obj``."""
    wanted = [p for k, p in PLAIN.items() if k != "tenant"] if plaintexts is None else list(plaintexts)
    found = set()
    for text in texts(obj):
        for p in wanted:
            if p in text:
                found.add(p)
    return found
