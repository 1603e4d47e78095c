"""A realistic e-commerce workload with PII, written as commit log segments of simulated nodes.

Used by the demo, the benchmarks and end-to-end tests. Deterministic for a given seed.
Every mutation is replicated to each node's ``cdc_raw`` (as RF=3 replicas log their own
copies), with node-specific segment ids and sync points.
"""

from __future__ import annotations

import decimal
import ipaddress
import random
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cdc_platform.commitlog.build import UpdateBuilder, timeuuid_for
from cdc_platform.commitlog.descriptor import VERSION_40
from cdc_platform.commitlog.model import Mutation
from cdc_platform.commitlog.writer import SegmentFullError, SegmentWriter
from cdc_platform.schema.cql import parse_schema
from cdc_platform.schema.model import Schema

SHOP_SCHEMA_CQL = """
CREATE KEYSPACE shop WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': '3'}  AND durable_writes = true;

CREATE TYPE shop.address (
    street text,
    city text,
    postcode text,
    country text
);

CREATE TABLE shop.customers (
    customer_id uuid PRIMARY KEY,
    address frozen<address>,
    birth_date date,
    created_at timestamp,
    email text,
    full_name text,
    loyalty_points int,
    phone text,
    ssn text,
    preferences map<text, text>,
    tags set<text>
) WITH ID = 6f1b2c3a-0001-11ef-8000-000000000001
    AND cdc = true
    AND comment = 'customers, with PII';

CREATE TABLE shop.orders (
    customer_id uuid,
    order_id timeuuid,
    currency ascii,
    notes text,
    placed_at timestamp,
    shipping frozen<address>,
    status text,
    total decimal,
    items list<frozen<tuple<text, int, decimal>>>,
    PRIMARY KEY (customer_id, order_id)
) WITH ID = 6f1b2c3a-0001-11ef-8000-000000000002
    AND CLUSTERING ORDER BY (order_id DESC)
    AND cdc = true;

CREATE TABLE shop.order_events (
    order_id timeuuid,
    event_time timestamp,
    seq int,
    ip inet,
    kind text,
    payload blob,
    PRIMARY KEY (order_id, event_time, seq)
) WITH ID = 6f1b2c3a-0001-11ef-8000-000000000003
    AND CLUSTERING ORDER BY (event_time ASC, seq ASC)
    AND cdc = true;

CREATE TABLE shop.sessions (
    session_id uuid PRIMARY KEY,
    customer_id uuid,
    ip inet,
    started_at timestamp,
    user_agent text
) WITH ID = 6f1b2c3a-0001-11ef-8000-000000000004
    AND cdc = true;

CREATE TABLE shop.inventory (
    sku text,
    warehouse text,
    sku_name text static,
    price double,
    quantity int,
    reserved int,
    updated_at timestamp,
    PRIMARY KEY (sku, warehouse)
) WITH ID = 6f1b2c3a-0001-11ef-8000-000000000005
    AND CLUSTERING ORDER BY (warehouse ASC)
    AND cdc = true;
"""

FIRST_NAMES = ["Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Dennis", "Frances", "Ken", "Radia"]
LAST_NAMES = [
    "Lovelace",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Turing",
    "Liskov",
    "Ritchie",
    "Allen",
    "Thompson",
    "Perlman",
]
CITIES = [("Berlin", "DE"), ("Lyon", "FR"), ("Leeds", "GB"), ("Porto", "PT"), ("Turku", "FI")]
SKUS = [(f"SKU-{i:04d}", f"Product {i}") for i in range(40)]
WAREHOUSES = ["ams", "fra", "waw"]


def shop_schema() -> Schema:
    """The workload's schema (parsed from its DESCRIBE-style CQL)."""
    return parse_schema(SHOP_SCHEMA_CQL, "shop workload schema")


@dataclass
class ShopWorkload:
    """Generates mutations of the shop keyspace in commit log order.

    Args:
        seed: random seed; the same seed gives the same mutations.
        start_micros: write timestamp of the first mutation (µs).
        invalid_rate: share of writes carrying values the quality suite rejects
            (negative quantities, malformed e-mail addresses, …).
    """

    seed: int = 7
    start_micros: int = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
    invalid_rate: float = 0.02
    schema: Schema = field(default_factory=shop_schema)
    pii_seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.ts = self.start_micros
        self.customers: list[uuid.UUID] = []
        self.orders: list[tuple[uuid.UUID, uuid.UUID]] = []
        self.events: dict[uuid.UUID, int] = {}
        s = self.schema
        self.t_customers = s.table("shop.customers")
        self.t_orders = s.table("shop.orders")
        self.t_events = s.table("shop.order_events")
        self.t_sessions = s.table("shop.sessions")
        self.t_inventory = s.table("shop.inventory")

    def _tick(self) -> int:
        self.ts += self.rng.randint(200, 3000)
        return self.ts

    def _now(self) -> int:
        return self.ts // 1_000_000

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _person(self) -> dict[str, object]:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        city, country = self.rng.choice(CITIES)
        n = self.rng.randint(1, 99999)
        email = f"{first.lower()}.{last.lower()}{n}@example.com"
        if self.rng.random() < self.invalid_rate:
            email = f"{first.lower()}{n}-at-example.com"  # rejected by the e-mail rule
        phone = f"+49 30 {self.rng.randint(1000000, 9999999)}"
        ssn = f"{self.rng.randint(100, 899):03d}-{self.rng.randint(10, 99):02d}-{self.rng.randint(1000, 9999):04d}"
        name = f"{first} {last}"
        street = f"{self.rng.randint(1, 200)} {self.rng.choice(['Main', 'High', 'Park', 'Mill'])} Street"
        self.pii_seen.update({email, phone, ssn, name, street})
        return {
            "email": email,
            "full_name": name,
            "phone": phone,
            "ssn": ssn,
            "birth_date": self.rng.randint(-15000, 12000),
            "address": {
                "street": street,
                "city": city,
                "postcode": f"{self.rng.randint(10000, 99999)}",
                "country": country,
            },
        }

    def _ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        if self.rng.random() < 0.2:
            return ipaddress.IPv6Address(self.rng.getrandbits(128))
        return ipaddress.IPv4Address(self.rng.getrandbits(32))

    def mutations(self, count: int) -> Iterator[Mutation]:
        """``count`` mutations, each one CQL statement on one partition."""
        ops = [
            (self._new_customer, 10),
            (self._update_customer, 8),
            (self._new_order, 12),
            (self._update_order, 10),
            (self._order_event, 25),
            (self._session, 10),
            (self._inventory, 15),
            (self._delete_something, 4),
            (self._tags, 6),
        ]
        weights = [w for _, w in ops]
        for _ in range(count):
            op = self.rng.choices(ops, weights)[0][0]
            m = op()
            if m is None:
                m = self._new_customer()
            yield m

    # -- operations ------------------------------------------------------------------------

    def _new_customer(self) -> Mutation:
        cid = self._uuid()
        self.customers.append(cid)
        ts = self._tick()
        values = self._person()
        points = self.rng.randint(0, 5000)
        if self.rng.random() < self.invalid_rate:
            points = -self.rng.randint(1, 100)  # rejected by the range rule
        values.update(
            loyalty_points=points,
            created_at=ts // 1000,
            tags=["new"],
            preferences=[("lang", self.rng.choice(["en", "de", "fr"])), ("newsletter", "yes")],
        )
        return (
            UpdateBuilder(self.t_customers, {"customer_id": cid}, now=self._now())
            .insert({}, values, ts)
            .mutation()
        )

    def _update_customer(self) -> Mutation | None:
        if not self.customers:
            return None
        cid = self.rng.choice(self.customers)
        ts = self._tick()
        person = self._person()
        field_name = self.rng.choice(["email", "phone", "address", "loyalty_points"])
        value = person.get(field_name, self.rng.randint(0, 9000))
        return (
            UpdateBuilder(self.t_customers, {"customer_id": cid}, now=self._now())
            .update({}, {field_name: value}, ts)
            .mutation()
        )

    def _tags(self) -> Mutation | None:
        if not self.customers:
            return None
        cid = self.rng.choice(self.customers)
        ts = self._tick()
        b = UpdateBuilder(self.t_customers, {"customer_id": cid}, now=self._now())
        if self.rng.random() < 0.7:
            b.add_elements({}, "tags", [self.rng.choice(["vip", "churn-risk", "b2b", "returning"])], ts)
        else:
            b.remove_elements({}, "tags", ["new"], ts)
        return b.mutation()

    def _new_order(self) -> Mutation | None:
        if not self.customers:
            return None
        cid = self.rng.choice(self.customers)
        ts = self._tick()
        oid = timeuuid_for(ts, self.rng.randint(0, 16383))
        self.orders.append((cid, oid))
        items = []
        total = decimal.Decimal(0)
        for _ in range(self.rng.randint(1, 4)):
            sku, _name = self.rng.choice(SKUS)
            qty = self.rng.randint(1, 3)
            price = decimal.Decimal(self.rng.randint(199, 99999)).scaleb(-2)
            items.append((sku, qty, price))
            total += price * qty
        person = self._person()
        values = {
            "status": "placed",
            "total": total,
            "currency": "EUR",
            "items": items,
            "shipping": person["address"],
            "placed_at": ts // 1000,
            "notes": None if self.rng.random() < 0.7 else "leave at the door",
        }
        values = {k: v for k, v in values.items() if v is not None}
        return (
            UpdateBuilder(self.t_orders, {"customer_id": cid}, now=self._now())
            .insert({"order_id": oid}, values, ts)
            .mutation()
        )

    def _update_order(self) -> Mutation | None:
        if not self.orders:
            return None
        cid, oid = self.rng.choice(self.orders)
        ts = self._tick()
        status = self.rng.choice(["paid", "packed", "shipped", "delivered", "cancelled"])
        return (
            UpdateBuilder(self.t_orders, {"customer_id": cid}, now=self._now())
            .update({"order_id": oid}, {"status": status}, ts)
            .mutation()
        )

    def _order_event(self) -> Mutation | None:
        if not self.orders:
            return None
        _, oid = self.rng.choice(self.orders)
        ts = self._tick()
        seq = self.events.get(oid, 0)
        self.events[oid] = seq + 1
        values = {
            "kind": self.rng.choice(["view", "pay", "ship", "scan"]),
            "payload": self.rng.randbytes(24),
            "ip": self._ip(),
        }
        return (
            UpdateBuilder(self.t_events, {"order_id": oid}, now=self._now())
            .insert({"event_time": ts // 1000, "seq": seq}, values, ts)
            .mutation()
        )

    def _session(self) -> Mutation:
        ts = self._tick()
        cid = self.rng.choice(self.customers) if self.customers else self._uuid()
        values = {
            "customer_id": cid,
            "ip": self._ip(),
            "started_at": ts // 1000,
            "user_agent": self.rng.choice(["Mozilla/5.0", "curl/8.5", "ShopApp/3.1 (iOS)"]),
        }
        return (
            UpdateBuilder(self.t_sessions, {"session_id": self._uuid()}, now=self._now())
            .insert({}, values, ts, ttl=self.rng.choice([600, 3600, 86400]))
            .mutation()
        )

    def _inventory(self) -> Mutation:
        sku, name = self.rng.choice(SKUS)
        wh = self.rng.choice(WAREHOUSES)
        ts = self._tick()
        qty = self.rng.randint(0, 500)
        if self.rng.random() < self.invalid_rate:
            qty = -self.rng.randint(1, 50)
        b = UpdateBuilder(self.t_inventory, {"sku": sku}, now=self._now())
        b.insert(
            {"warehouse": wh},
            {
                "quantity": qty,
                "reserved": self.rng.randint(0, 20),
                "price": self.rng.randint(199, 9999) / 100,
                "updated_at": ts // 1000,
            },
            ts,
        )
        if self.rng.random() < 0.3:
            b.update(None, {"sku_name": name}, ts)
        return b.mutation()

    def _delete_something(self) -> Mutation | None:
        ts = self._tick()
        choice = self.rng.random()
        if choice < 0.3 and self.orders:
            cid, oid = self.orders.pop(self.rng.randrange(len(self.orders)))
            return (
                UpdateBuilder(self.t_orders, {"customer_id": cid}, now=self._now())
                .delete_row({"order_id": oid}, ts)
                .mutation()
            )
        if choice < 0.55 and self.events:
            oid = self.rng.choice(list(self.events))
            start = self.start_micros // 1000
            end = ts // 1000 - self.rng.randint(0, 60_000)
            return (
                UpdateBuilder(self.t_events, {"order_id": oid}, now=self._now())
                .delete_range({"event_time": start}, {"event_time": end}, ts)
                .mutation()
            )
        if choice < 0.75 and self.customers:
            cid = self.rng.choice(self.customers)
            return (
                UpdateBuilder(self.t_customers, {"customer_id": cid}, now=self._now())
                .delete_columns({}, ["phone"], ts)
                .mutation()
            )
        if self.customers:
            cid = self.customers.pop(self.rng.randrange(len(self.customers)))
            return (
                UpdateBuilder(self.t_customers, {"customer_id": cid}, now=self._now())
                .delete_partition(ts)
                .mutation()
            )
        return None


@dataclass(frozen=True)
class NodeLayout:
    """How one simulated node writes its commit log."""

    name: str
    segment_id_base: int
    mutations_per_sync: int
    compression: str | None = None


DEFAULT_NODES = (
    NodeLayout("node1", 1_767_225_600_000, 40, None),
    NodeLayout("node2", 1_767_225_600_100, 55, "lz4"),
    NodeLayout("node3", 1_767_225_600_200, 70, "zstd"),
)


class NodeWriter:
    """One simulated node writing its commit log into ``cdc_raw`` as Cassandra does, over time.

    Mutations are appended to the active segment; every ``layout.mutations_per_sync``
    mutations the segment is synced (its ``_cdc.idx`` offset grows); a full segment is closed
    (``COMPLETED``) and the next one starts.
    """

    def __init__(
        self, directory: Path, layout: NodeLayout, *, segment_size: int = 1 << 20, version: int = VERSION_40
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.layout = layout
        self.segment_size = segment_size
        self.version = version
        self.paths: list[Path] = []
        self._segment_id = layout.segment_id_base
        self._writer = self._open()
        self._unsynced = 0

    def _open(self) -> SegmentWriter:
        writer = SegmentWriter(
            self.directory,
            self._segment_id,
            version=self.version,
            compression=self.layout.compression,
            segment_size=self.segment_size,
        )
        self.paths.append(writer.path)
        return writer

    def append(self, mutations: Iterable[Mutation]) -> None:
        for m in mutations:
            try:
                self._writer.add(m)
            except SegmentFullError:
                self._writer.close()
                self._segment_id += 1
                self._writer = self._open()
                self._writer.add(m)
                self._unsynced = 0
            self._unsynced += 1
            if self._unsynced >= self.layout.mutations_per_sync:
                self.sync()

    def sync(self) -> None:
        """Makes everything appended durable (the index offset moves)."""
        self._writer.sync()
        self._unsynced = 0

    def close(self) -> None:
        """Finishes the active segment (``COMPLETED``), as a drained node does."""
        self._writer.close()


def write_node(
    directory: Path,
    mutations: list[Mutation],
    layout: NodeLayout,
    *,
    segment_size: int = 1 << 20,
    version: int = VERSION_40,
    complete: bool = True,
) -> list[Path]:
    """Writes ``mutations`` as one node's segments (with ``_cdc.idx`` files) into ``directory``.

    Segments fill up and are closed (``COMPLETED``) like Cassandra's; the last one stays
    open unless ``complete``.
    """
    writer = NodeWriter(directory, layout, segment_size=segment_size, version=version)
    writer.append(mutations)
    if complete:
        writer.close()
    else:
        writer.sync()
    return writer.paths


def write_cluster(
    base: Path,
    mutations: list[Mutation],
    nodes: tuple[NodeLayout, ...] = DEFAULT_NODES,
    *,
    segment_size: int = 1 << 20,
) -> dict[str, list[Path]]:
    """Every node's ``cdc_raw`` under ``base/<node>/cdc_raw`` receives every mutation."""
    return {
        n.name: write_node(base / n.name / "cdc_raw", mutations, n, segment_size=segment_size) for n in nodes
    }
