"""Masking policies: rules per ``keyspace.table`` → column path → algorithm, applied to row changes.

A policy is loaded from YAML (``config/masking.yaml`` documents the format) and validated
against the schema at load time: unknown tables, columns and UDT fields, paths that do not
fit the column's type and algorithms that do not apply to the values are errors naming the
file, the table and the column. :meth:`MaskingPolicy.mask` then masks every value of a
configured column a row change carries: regular and static cells, partition-key and
clustering values, range-deletion bounds, fields of frozen UDT values and of non-frozen UDT
cells, list and set elements (set elements of non-frozen sets are cell paths), map keys and
values. Tombstones, nulls and empty values carry no plaintext and stay as they are.

Nulls: a value masked to null is written the way CQL writes a null, as a cell tombstone at
the cell's timestamp (so every destination shows null, and a later replay converges); a
rule masking a whole non-frozen collection drops its element cells and keeps its
collection deletions. Undecodable bytes (:class:`InvalidValue`) of a masked column would
leak through their raw bytes: they are nulled the same way, or, where the value identifies
a row or element (keys, cell paths), replaced by the rule's masking of their hex form. The
audit counts them.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from cdc_platform.changes.records import CellChange, ClusteringBound, RowChange
from cdc_platform.masking.algorithms import (
    HmacSha256,
    Masker,
    RuleSpec,
    Tokenize,
    ValueShapeError,
    build_masker,
)
from cdc_platform.masking.errors import KeyUnavailableError, MaskingConfigError, MaskingError
from cdc_platform.masking.paths import PathError, Step, format_path, parse_path, resolve
from cdc_platform.masking.scrub import TextScrubber, masked_text, renderings
from cdc_platform.masking.secrets import SecretKey, SecretSource, valid_key_id
from cdc_platform.masking.vault import TokenStore
from cdc_platform.schema.model import Column, Schema, Table
from cdc_platform.schema.types import CqlType, ListType, MapType, SetType, TupleType, UserType, VectorType
from cdc_platform.schema.values import EMPTY, InvalidValue, comparator_key, serialize

log = logging.getLogger(__name__)

TOP_LEVEL = frozenset({"version", "keys", "hmac", "vault", "mask_text", "tables"})
KEY_SOURCES = frozenset({"env", "file"})
STORED_TOKENS = 100_000  # tokens known to be in the vault (not written again by this process)


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class AuditEntry:
    """What one rule did to a batch. Never holds values.

    Attributes:
        column_path: the rule's path (``email``, ``address.street``, ``tags[]``).
        algorithm: the rule's algorithm.
        key_id: the key used (``hmac_sha256``: the current key; ``tokenize``: the vault key).
        values_masked: values masked.
        invalid_values: undecodable values of the column nulled (or masked at key positions).
    """

    column_path: str
    algorithm: str
    key_id: str | None
    values_masked: int
    invalid_values: int = 0


@dataclass
class MaskAudit:
    """The audit of one :meth:`MaskingPolicy.mask` call: one entry per rule of the table."""

    table: str
    entries: list[AuditEntry] = field(default_factory=list)

    @property
    def values_masked(self) -> int:
        return sum(e.values_masked for e in self.entries)

    @property
    def invalid_values(self) -> int:
        return sum(e.invalid_values for e in self.entries)

    def as_metadata(self) -> dict[str, Any]:
        """A JSON-able summary (Dagster metadata, logs): counts, algorithms and key ids only."""
        return {
            "table": self.table,
            "values_masked": self.values_masked,
            "invalid_values": self.invalid_values,
            "rules": {
                e.column_path: {
                    "algorithm": e.algorithm,
                    "key_id": e.key_id,
                    "values_masked": e.values_masked,
                    "invalid_values": e.invalid_values,
                }
                for e in self.entries
            },
        }


@dataclass
class MaskResult:
    """Masked changes (new objects; unmasked changes are returned as they are, being immutable)."""

    changes: list[RowChange]
    audit: MaskAudit


@dataclass(frozen=True)
class Rule:
    """A validated rule.

    Attributes:
        table: ``keyspace.table``.
        path: the column path, normalized (``address.street``).
        column: the column name.
        steps: the path's steps below the column.
        algorithm: the algorithm name.
        masker: the built masker.
    """

    table: str
    path: str
    column: str
    steps: tuple[Step, ...]
    algorithm: str
    masker: Masker = field(repr=False)

    @property
    def key_id(self) -> str | None:
        return self.masker.key_id


# --------------------------------------------------------------------------------------------
# Compiled plans: per column, a tree of the steps leading to rules


@dataclass
class _Node:
    type: CqlType
    rule: Rule | None = None
    children: dict[Step, _Node] = field(default_factory=dict)

    def first_rule(self) -> Rule:
        """The rule accounting for undecodable values found at this node."""
        if self.rule is not None:
            return self.rule
        return next(iter(self.children.values())).first_rule()


@dataclass
class _ColumnPlan:
    column: Column
    node: _Node
    dropped: bool = False


@dataclass
class _TablePlan:
    table: str
    rules: list[Rule]
    keys: dict[str, _ColumnPlan]
    cells: dict[str, _ColumnPlan]

    @property
    def tokenizes(self) -> bool:
        return any(isinstance(r.masker, Tokenize) for r in self.rules)


def _plan(table: Table, rules: list[Rule]) -> _TablePlan:
    """Builds the per-column trees; rules whose column was dropped since drop its cells."""
    columns: dict[str, _ColumnPlan] = {}
    for rule in rules:
        column = table.by_name.get(rule.column)
        if column is None:
            if rule.column not in table.dropped:
                raise MaskingError(
                    "the masking rules name this column but the table no longer has it",
                    table=table.qualified_name,
                    column=rule.column,
                )
            dropped = table.dropped[rule.column].as_column()
            columns[rule.column] = _ColumnPlan(dropped, _Node(dropped.type, rule), dropped=True)
            continue
        try:
            types = resolve(column, rule.steps).types
        except PathError as exc:
            raise MaskingError(
                f"the rule no longer fits the column: {exc}", table=table.qualified_name, column=rule.path
            ) from None
        if rule.column not in columns:
            columns[rule.column] = _ColumnPlan(column, _Node(column.type))
        node = columns[rule.column].node
        for step, t in zip(rule.steps, types, strict=True):
            node = node.children.setdefault(step, _Node(t))
        node.rule = rule
    keys = {n: p for n, p in columns.items() if p.column.is_primary_key}
    cells = {n: p for n, p in columns.items() if not p.column.is_primary_key}
    return _TablePlan(table.qualified_name, rules, keys, cells)


# --------------------------------------------------------------------------------------------
# One mask() call


class _Run:
    """Masks the changes of one batch, counting per rule and collecting vault entries."""

    def __init__(self, policy: MaskingPolicy, plan: _TablePlan) -> None:
        self.policy = policy
        self.plan = plan
        self.masked: Counter[str] = Counter()
        self.invalid: Counter[str] = Counter()
        self.seen: list[tuple[str, str]] = []
        self.pending: dict[str, tuple[Tokenize, str]] = {}

    def fail(self, rule: Rule, message: str) -> MaskingError:
        return MaskingError(message, table=self.plan.table, column=rule.path)

    # -- values ---------------------------------------------------------------------------

    def leaf(self, node: _Node, value: Any) -> Any:
        rule = node.rule
        assert rule is not None
        masker = rule.masker
        try:
            out = masker.mask(value)
        except ValueShapeError as exc:
            raise self.fail(rule, str(exc)) from None
        self.masked[rule.path] += 1
        shown = masked_text(node.type, out)
        self.seen.extend((text, shown) for text in renderings(node.type, value))
        if isinstance(masker, Tokenize) and not self.policy._is_stored(out):
            self.pending[out] = (masker, value)
        return out

    def value(self, node: _Node, value: Any) -> Any:
        """A (frozen) value with the rules under ``node`` applied."""
        if value is None or value is EMPTY:
            return value
        if isinstance(value, InvalidValue):
            return self.invalid_null(node, value)
        if node.rule is not None:
            return self.leaf(node, value)
        t = node.type
        try:
            if isinstance(t, UserType):
                out = dict(value)
                for step, child in node.children.items():
                    if step.name in out:
                        out[step.name] = self.value(child, out[step.name])
                return out
            if isinstance(t, TupleType):
                items = list(value)
                for step, child in node.children.items():
                    if step.index < len(items):
                        items[step.index] = self.value(child, items[step.index])
                return tuple(items)
            if isinstance(t, MapType):
                keys = node.children.get(Step("keys"))
                values = node.children.get(Step("elements"))
                entries = [
                    (
                        self.value(keys, k) if keys else k,
                        self.value(values, v) if values else v,
                    )
                    for k, v in value
                ]
                return _sorted_unique(t.key, entries, lambda e: e[0]) if keys else entries
            if isinstance(t, (ListType, SetType, VectorType)):
                child = node.children[Step("elements")]
                items = [self.value(child, x) for x in value]
                return _sorted_unique(t.element, items, lambda x: x) if isinstance(t, SetType) else items
        except (TypeError, ValueError, KeyError) as exc:
            raise self.fail(
                node.first_rule(), f"a {t.cql()} value has an unexpected shape ({type(exc).__name__})"
            ) from None
        raise self.fail(node.first_rule(), f"no rule path through {t.cql()}")

    def invalid_null(self, node: _Node, value: InvalidValue) -> None:
        self.invalid[node.first_rule().path] += 1
        self.seen.extend((text, masked_text(node.type, None)) for text in renderings(node.type, value))
        return None

    def identity(self, node: _Node, value: Any) -> Any:
        """A value identifying a row or an element: never null, undecodable bytes masked too."""
        if value is None or value is EMPTY:
            return value
        if not isinstance(value, InvalidValue):
            return self.value(node, value)
        rule = node.first_rule()
        self.invalid[rule.path] += 1
        # Identity rules are injective text algorithms: distinct raw bytes stay distinct.
        hex_text = "0x" + value.raw.hex()
        masked = rule.masker.mask(hex_text)
        if isinstance(rule.masker, Tokenize) and not self.policy._is_stored(masked):
            self.pending[masked] = (rule.masker, hex_text)
        self.seen.extend((text, masked) for text in renderings(node.type, value))
        return InvalidValue(masked.encode("utf-8"), "undecodable value of a masked column (masked)")

    # -- row changes ----------------------------------------------------------------------

    def keys(self, values: dict[str, Any]) -> dict[str, Any]:
        plans = self.plan.keys
        if not any(name in plans for name in values):
            return values
        return {
            name: self.identity(plans[name].node, v) if name in plans else v for name, v in values.items()
        }

    def cell(self, plan: _ColumnPlan, cell: CellChange) -> CellChange | None:
        """The masked cell; ``None`` drops it."""
        node = plan.node
        t = plan.column.type
        if plan.dropped:
            # Cells of a dropped column are never visible: nothing of them needs to leave.
            if not cell.deleted:
                self.masked[node.first_rule().path] += 1
            return None
        if not t.is_multicell:
            if cell.deleted:
                return cell
            return self.cell_value(node, cell)
        if cell.collection_deletion:
            return cell
        if node.rule is not None:
            # The whole non-frozen collection is redacted: its elements (and their paths) go.
            if not cell.deleted:
                self.masked[node.rule.path] += 1
            return None
        if isinstance(t, UserType):
            if isinstance(cell.path, InvalidValue):
                self.invalid_null(node, cell.path)
                return None  # an unknown field of a masked UDT: its value may be a masked field's
            child = node.children.get(Step("field", name=cell.path))
            if child is None or cell.deleted:
                return cell
            return self.cell_value(child, cell)
        keys = node.children.get(Step("keys"))
        elements = node.children.get(Step("elements"))
        if isinstance(t, SetType):
            assert elements is not None
            return cell._replace(path=self.identity(elements, cell.path))
        if keys is not None:
            cell = cell._replace(path=self.identity(keys, cell.path))
        if elements is None or cell.deleted:
            return cell
        return self.cell_value(elements, cell)

    def cell_value(self, node: _Node, cell: CellChange) -> CellChange:
        value = cell.value
        if value is None or value is EMPTY:
            return cell
        masked = self.value(node, value)
        if masked is None:
            return _null_cell(cell)
        return cell._replace(value=masked)

    def change(self, ch: RowChange) -> RowChange:
        updates: dict[str, Any] = {}
        if self.plan.keys:
            pk = self.keys(ch.partition_key)
            if pk is not ch.partition_key:
                updates["partition_key"] = pk
            ck = self.keys(ch.clustering)
            if ck is not ch.clustering:
                updates["clustering"] = ck
            for name in ("range_start", "range_end"):
                bound: ClusteringBound | None = getattr(ch, name)
                if bound is not None:
                    masked = self.keys(bound.clustering)
                    if masked is not bound.clustering:
                        updates[name] = ClusteringBound(masked, bound.inclusive)
        plans = self.plan.cells
        if plans and ch.cells:
            cells: list[CellChange] = []
            changed = False
            for cell in ch.cells:
                plan = plans.get(cell.column)
                out = cell if plan is None else self.cell(plan, cell)
                if out is not cell:
                    changed = True
                if out is not None:
                    cells.append(out)
            if changed:
                updates["cells"] = tuple(cells)
        return dataclasses.replace(ch, **updates) if updates else ch


def _null_cell(cell: CellChange) -> CellChange:
    """The cell as CQL writes a null: a tombstone at its timestamp (deletion time deterministic)."""
    if cell.ttl and cell.local_deletion_time is not None:
        deleted_at = cell.local_deletion_time - cell.ttl  # when the expiring cell was written
    else:
        deleted_at = cell.timestamp // 1_000_000
    return cell._replace(
        value=None, ttl=None, local_deletion_time=deleted_at, deleted=True, counter_context=None
    )


def _sorted_unique(t: CqlType, items: list[Any], key: Any) -> list[Any]:
    """Items in Cassandra's order of their (masked) keys, one per key (what a frozen set or map holds)."""
    sort_key = comparator_key(t)
    by_bytes = {serialize(t, key(item)): item for item in items}
    return [by_bytes[b] for b in sorted(by_bytes, key=sort_key)]


# --------------------------------------------------------------------------------------------
# Configuration


class _Loader:
    """Validates a configuration mapping and builds the rules (keys resolved on first use)."""

    def __init__(self, data: Any, schema: Schema, secrets: SecretSource, source: str, base_dir: Path | None):
        self.data = data
        self.schema = schema
        self.secrets = secrets
        self.source = source
        self.base_dir = base_dir
        self.key_specs: dict[str, Mapping[str, Any] | None] = {}
        self.resolved: dict[str, SecretKey] = {}

    def fail(self, message: str, table: str | None = None, column: str | None = None) -> NoReturn:
        raise MaskingConfigError(message, source=self.source, table=table, column=column)

    def mapping(self, value: Any, what: str, table: str | None = None) -> Mapping[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(f"{what} must be a mapping", table)
        return value

    def load(self) -> tuple[dict[str, list[Rule]], dict[str, Any]]:
        data = self.mapping(self.data, "the configuration")
        unknown = sorted(set(map(str, data)) - TOP_LEVEL)
        if unknown:
            self.fail(f"unknown section {', '.join(unknown)} (sections: {', '.join(sorted(TOP_LEVEL))})")
        for key_id, spec in self.mapping(data.get("keys"), "keys").items():
            self.key_specs[self.key_id(key_id, "keys")] = self.key_spec(key_id, spec)
        hmac_cfg = self.mapping(data.get("hmac"), "hmac")
        self.check_section(hmac_cfg, "hmac", {"key", "previous_keys"})
        hmac_key = hmac_cfg.get("key")
        if hmac_key is not None:
            self.key_id(hmac_key, "hmac.key")
        previous = hmac_cfg.get("previous_keys") or []
        if isinstance(previous, str) or not isinstance(previous, list):
            self.fail("hmac.previous_keys must be a list of key ids")
        hmac_previous = tuple(self.key_id(p, "hmac.previous_keys") for p in previous)
        vault_cfg = self.mapping(data.get("vault"), "vault")
        self.check_section(vault_cfg, "vault", {"key"})
        vault_key = vault_cfg.get("key")
        if vault_key is not None:
            self.key_id(vault_key, "vault.key")
        scrub_cfg = self.mapping(data.get("mask_text"), "mask_text")
        self.check_section(scrub_cfg, "mask_text", {"capacity", "min_length"})
        for name in ("capacity", "min_length"):
            v = scrub_cfg.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                self.fail(f"mask_text.{name} must be an integer ≥ 1")
        rules: dict[str, list[Rule]] = {}
        for qualified, columns in self.mapping(data.get("tables"), "tables").items():
            table = self.table(qualified)
            rules[table.qualified_name] = self.table_rules(
                table,
                self.mapping(columns, "a table's rules", str(qualified)),
                hmac_key,
                hmac_previous,
                vault_key,
            )
        return rules, dict(scrub_cfg)

    def check_section(self, section: Mapping[Any, Any], name: str, allowed: set[str]) -> None:
        unknown = sorted(set(map(str, section)) - allowed)
        if unknown:
            self.fail(f"{name} has no setting {', '.join(unknown)} (settings: {', '.join(sorted(allowed))})")

    def key_id(self, key_id: Any, where: str) -> str:
        if not valid_key_id(key_id):
            self.fail(f"{where}: key id {key_id!r} is not [A-Za-z0-9_.-], 1-64 characters")
        return str(key_id)

    def key_spec(self, key_id: Any, spec: Any) -> Mapping[str, Any] | None:
        if spec is None:
            return None
        if not isinstance(spec, Mapping):
            # A bare string here is most likely key material pasted into the file: never echo it.
            self.fail(f"keys.{key_id}: give the key's source as {{env: VARIABLE}} or {{file: path}}")
        names = set(map(str, spec))
        if names - KEY_SOURCES or len(names) != 1:
            self.fail(
                f"keys.{key_id}: a key has exactly one source, env: or file: (key material never "
                "goes into configuration files)"
            )
        value = next(iter(spec.values()))
        if not isinstance(value, str) or not value:
            self.fail(f"keys.{key_id}: the source must name a variable or a file")
        return spec

    def key(self, key_id: str, table: str, column: str) -> SecretKey:
        if key_id not in self.resolved:
            if key_id not in self.key_specs:
                self.fail(f"key {key_id!r} is not declared under keys", table, column)
            try:
                self.resolved[key_id] = self.secrets.resolve(
                    key_id, self.key_specs[key_id], base_dir=self.base_dir
                )
            except KeyUnavailableError as exc:
                raise KeyUnavailableError(f"{self.source}: {table}.{column}: {exc}") from None
        return self.resolved[key_id]

    def table(self, qualified: Any) -> Table:
        name = str(qualified)
        try:
            return self.schema.table(name)
        except KeyError:
            known = ", ".join(sorted(t.qualified_name for t in self.schema.tables)) or "none"
            return self.fail(f"unknown table {name!r} (tables in the schema: {known})")

    def table_rules(
        self,
        table: Table,
        columns: Mapping[Any, Any],
        hmac_key: str | None,
        hmac_previous: tuple[str, ...],
        vault_key: str | None,
    ) -> list[Rule]:
        qualified = table.qualified_name
        out: list[Rule] = []
        for raw_path, raw_rule in columns.items():
            try:
                column_name, steps = parse_path(raw_path)
            except PathError as exc:
                return self.fail(str(exc), qualified, str(raw_path))
            path = format_path(column_name, steps)
            column = table.by_name.get(column_name)
            if column is None:
                known = ", ".join(c.name for c in table.columns)
                return self.fail(f"unknown column {column_name!r} (columns: {known})", qualified, path)
            if column.is_counter:
                return self.fail(
                    "counter columns cannot be masked (their values merge by shard)", qualified, path
                )
            try:
                target = resolve(column, steps)
            except PathError as exc:
                return self.fail(str(exc), qualified, path)
            rule_cfg = {"algorithm": raw_rule} if isinstance(raw_rule, str) else raw_rule
            if not isinstance(rule_cfg, Mapping) or "algorithm" not in rule_cfg:
                return self.fail("a rule is {algorithm: name, …parameters}", qualified, path)
            params = {str(k): v for k, v in rule_cfg.items() if k != "algorithm"}

            spec = RuleSpec(
                qualified_path=f"{qualified}.{path}",
                leaf_type=target.leaf_type,
                identity=target.identity,
                nullable=target.nullable,
                params=params,
                key=functools.partial(self.key, table=qualified, column=path),
                hmac_key=hmac_key,
                hmac_previous=hmac_previous,
                vault_key=vault_key,
                fail=functools.partial(self.fail, table=qualified, column=path),
            )
            masker = build_masker(rule_cfg["algorithm"], spec)
            out.append(Rule(qualified, path, column_name, steps, masker.algorithm, masker))
        self.check_overlaps(qualified, out)
        return out

    def check_overlaps(self, qualified: str, rules: list[Rule]) -> None:
        for a in rules:
            for b in rules:
                if a is not b and a.column == b.column and b.steps[: len(a.steps)] == a.steps:
                    self.fail(f"overlaps the rule on {a.path} (one rule per value)", qualified, b.path)


# --------------------------------------------------------------------------------------------
# The policy


class MaskingPolicy:
    """Masking rules validated against a schema, applied to row changes.

    Build with :meth:`from_file` or :meth:`from_dict`.
    """

    def __init__(
        self,
        schema: Schema,
        rules: dict[str, list[Rule]],
        *,
        vault: TokenStore | None = None,
        source: str = "<dict>",
        capacity: int = 10_000,
        min_length: int = 4,
    ) -> None:
        self.schema = schema
        self.source = source
        self.vault = vault
        self._rules = rules
        self._scrubber = TextScrubber(capacity=capacity, min_length=min_length)
        self._plans: dict[Any, _TablePlan] = {}
        self._stored: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        for name, table_rules in rules.items():
            self._plan_for(schema.table(name), table_rules)

    def __repr__(self) -> str:
        n = sum(len(r) for r in self._rules.values())
        return f"MaskingPolicy({self.source!r}, {n} rules on {len(self._rules)} tables)"

    def __reduce__(self) -> NoReturn:
        # Its maskers hold key material: a worker process loads the policy itself.
        raise TypeError("a MaskingPolicy holds key material and cannot be pickled; load it in each process")

    # -- loading --------------------------------------------------------------------------

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        schema: Schema,
        *,
        secrets: SecretSource | None = None,
        vault: TokenStore | None = None,
    ) -> MaskingPolicy:
        """Loads ``path`` (YAML).

        Raises:
            MaskingConfigError: the file does not parse or does not fit the schema.
            KeyUnavailableError: a key the rules use cannot be obtained.
        """
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text("utf-8"))
        except OSError as exc:
            raise MaskingConfigError(f"cannot read: {exc.strerror}", source=str(path)) from None
        except yaml.YAMLError as exc:
            raise MaskingConfigError(f"not valid YAML: {exc}", source=str(path)) from None
        return cls.from_dict(
            data, schema, secrets=secrets, vault=vault, source=str(path), base_dir=path.resolve().parent
        )

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        schema: Schema,
        *,
        secrets: SecretSource | None = None,
        vault: TokenStore | None = None,
        source: str = "<dict>",
        base_dir: Path | None = None,
    ) -> MaskingPolicy:
        """Builds a policy from a configuration mapping (the YAML's content).

        Raises:
            MaskingConfigError: the configuration does not fit the schema.
            KeyUnavailableError: a key the rules use cannot be obtained.
        """
        loader = _Loader(data, schema, secrets or SecretSource(), source, base_dir)
        rules, scrub = loader.load()
        return cls(schema, rules, vault=vault, source=source, **scrub)

    # -- introspection --------------------------------------------------------------------

    @property
    def tables(self) -> list[str]:
        """``keyspace.table`` of every table with rules."""
        return sorted(self._rules)

    def rules(self, table: Table | str) -> list[Rule]:
        name = table if isinstance(table, str) else table.qualified_name
        return list(self._rules.get(name, ()))

    def masked_columns(self, table: Table | str) -> dict[str, str]:
        """Column path → algorithm name for the table's rules (``{}`` when it has none)."""
        return {r.path: r.algorithm for r in self.rules(table)}

    def hmac_candidates(self, column: str, plaintext: str) -> list[str]:
        """The masked values of ``plaintext`` under the current key and every previous key.

        Args:
            column: ``keyspace.table.column_path`` of an ``hmac_sha256`` rule.
            plaintext: the value to look up.

        Returns:
            The current key's value first; a lookup ``WHERE col IN (…)`` finds rows masked
            before and after a rotation.
        """
        ks, _, rest = column.partition(".")
        tname, _, path = rest.partition(".")
        try:
            col, steps = parse_path(path)
        except PathError as exc:
            raise KeyError(f"{column!r}: {exc}") from None
        wanted = format_path(col, steps)
        for rule in self._rules.get(f"{ks}.{tname}", ()):
            if rule.path == wanted:
                if not isinstance(rule.masker, HmacSha256):
                    raise KeyError(f"{column!r} is masked with {rule.algorithm}, not hmac_sha256")
                return rule.masker.candidates(plaintext)
        raise KeyError(f"no rule for {column!r}")

    # -- masking --------------------------------------------------------------------------

    def _plan_for(self, table: Table, rules: list[Rule]) -> _TablePlan:
        # Keyed by the table's structure: a table evolved since loading gets a plan of its own.
        key = (table.qualified_name, tuple(table.columns), tuple(sorted(table.dropped)))
        plan = self._plans.get(key)
        if plan is None:
            plan = _plan(table, rules)
            self._plans[key] = plan
        return plan

    def _is_stored(self, token: str) -> bool:
        with self._lock:
            if token in self._stored:
                self._stored.move_to_end(token)
                return True
            return False

    def mask(self, table: Table, changes: Sequence[RowChange]) -> MaskResult:
        """Masks a batch of one table's changes.

        Args:
            table: the table the changes belong to.
            changes: its row changes (not modified).

        Returns:
            The masked changes, in order, and the audit (counts per rule).

        Raises:
            MaskingError: a value of a masked column has an unexpected shape, a rule's column
                is missing from ``table``, or a tokenize rule has no vault to write to.
            VaultError: the token vault refused the new tokens (nothing was returned).
        """
        rules = self._rules.get(table.qualified_name)
        if not rules:
            return MaskResult(list(changes), MaskAudit(table.qualified_name, []))
        plan = self._plan_for(table, rules)
        if plan.tokenizes and self.vault is None:
            raise MaskingError(
                "tokenize rules need a token vault (MaskingPolicy.from_file(..., vault=TokenVault(url)))",
                table=table.qualified_name,
            )
        run = _Run(self, plan)
        out = [run.change(ch) for ch in changes]
        if run.pending:
            assert self.vault is not None
            entries = [masker.cipher.seal(token, plain) for token, (masker, plain) in run.pending.items()]
            # Tokens reach the vault before any destination can see them.
            self.vault.store(entries)
            with self._lock:
                for e in entries:
                    self._stored[e.token] = None
                while len(self._stored) > STORED_TOKENS:
                    self._stored.popitem(last=False)
        self._scrubber.remember(run.seen)
        audit = MaskAudit(
            table.qualified_name,
            [
                AuditEntry(r.path, r.algorithm, r.key_id, run.masked[r.path], run.invalid[r.path])
                for r in rules
            ],
        )
        log.debug(
            "masked %s: %d values (%d undecodable) in %d changes",
            table.qualified_name,
            audit.values_masked,
            audit.invalid_values,
            len(out),
        )
        return MaskResult(out, audit)

    def mask_text(self, text: str) -> str:
        """``text`` with every plaintext this policy masked in this process (recently) replaced.

        For log lines, error messages and Dagster metadata.
        """
        return self._scrubber.scrub(text)
