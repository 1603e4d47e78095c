"""Column paths of masking rules: which part of a column's value a rule masks.

Grammar: a column name, then any number of steps::

    email               the whole value
    address.street      a UDT field (frozen or not)
    items[].0           a tuple component (by index), here of each list element
    tags[]              list elements, set elements, map values
    preferences{}       map keys

Names holding ``.``, ``[`` or ``{`` are written double-quoted (``"a.b".c``, ``""`` for a
quote inside).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cdc_platform.schema.model import Column
from cdc_platform.schema.types import (
    CqlType,
    ListType,
    MapType,
    SetType,
    TupleType,
    UserType,
    VectorType,
)

StepKind = Literal["field", "component", "elements", "keys"]


@dataclass(frozen=True)
class Step:
    kind: StepKind
    name: str = ""  # the field name (``field``)
    index: int = 0  # the component index (``component``)

    def __str__(self) -> str:
        if self.kind == "elements":
            return "[]"
        if self.kind == "keys":
            return "{}"
        if self.kind == "component":
            return f".{self.index}"
        return "." + _quote(self.name)


class PathError(ValueError):
    """A rule path does not parse, or does not fit the column's type."""


def _quote(name: str) -> str:
    if name and not any(ch in name for ch in '.[{"') and name.strip() == name:
        return name
    return '"' + name.replace('"', '""') + '"'


def _name(text: str, pos: int) -> tuple[str, bool, int]:
    """A (possibly quoted) name at ``pos``: (name, was quoted, end)."""
    if pos < len(text) and text[pos] == '"':
        out = []
        i = pos + 1
        while i < len(text):
            if text[i] == '"':
                if i + 1 < len(text) and text[i + 1] == '"':
                    out.append('"')
                    i += 2
                    continue
                return "".join(out), True, i + 1
            out.append(text[i])
            i += 1
        raise PathError(f"unterminated quoted name in {text!r}")
    end = pos
    while end < len(text) and text[end] not in ".[{":
        end += 1
    return text[pos:end], False, end


def parse_path(text: str) -> tuple[str, tuple[Step, ...]]:
    """``"address.street"`` → ``("address", (Step("field", "street"),))``.

    Raises:
        PathError: an empty name, an unknown step, brackets that do not close.
    """
    if not isinstance(text, str) or not text.strip():
        raise PathError("a rule needs a column name")
    text = text.strip()
    column, _, pos = _name(text, 0)
    if not column:
        raise PathError(f"no column name in {text!r}")
    steps: list[Step] = []
    while pos < len(text):
        if text.startswith("[]", pos):
            steps.append(Step("elements"))
            pos += 2
        elif text.startswith("{}", pos):
            steps.append(Step("keys"))
            pos += 2
        elif text[pos] == ".":
            name, quoted, pos = _name(text, pos + 1)
            if not name:
                raise PathError(f"empty field name in {text!r}")
            if name.isdigit() and not quoted:
                steps.append(Step("component", index=int(name)))
            else:
                steps.append(Step("field", name=name))
        else:
            raise PathError(f"unexpected {text[pos]!r} at {pos} in {text!r} (expected .field, [] or {{}})")
    return column, tuple(steps)


def format_path(column: str, steps: tuple[Step, ...]) -> str:
    return _quote(column) + "".join(str(s) for s in steps)


@dataclass(frozen=True)
class Target:
    """What a path designates in a column.

    Attributes:
        leaf_type: the type of the values the rule masks.
        identity: the values identify something (primary-key values, map keys, elements of a
            non-frozen set, which are cell paths): masking them must keep distinct values
            distinct.
        nullable: a masked value may become null (CQL collections cannot hold nulls).
        types: the type reached after each step.
    """

    leaf_type: CqlType
    identity: bool
    nullable: bool
    types: tuple[CqlType, ...] = ()


def _field(t: CqlType, step: Step) -> CqlType:
    if isinstance(t, UserType):
        if step.kind == "component":
            raise PathError(
                f"UDT {t.name} fields are named, not numbered (fields: {', '.join(t.field_names)})"
            )
        if step.name not in t.field_names:
            raise PathError(f"UDT {t.name} has no field {step.name!r} (fields: {', '.join(t.field_names)})")
        return t.field_types[t.field_names.index(step.name)]
    if isinstance(t, TupleType):
        if step.kind != "component" or step.index >= len(t.elements):
            raise PathError(f"{t.cql()} has components .0 to .{len(t.elements) - 1}")
        return t.elements[step.index]
    raise PathError(f"{t.cql()} has no fields")


def resolve(column: Column, steps: tuple[Step, ...]) -> Target:
    """The target of ``steps`` in ``column``.

    Raises:
        PathError: a step does not apply to the type it meets.
    """
    t = column.type
    identity = column.is_primary_key
    nullable = True
    types: list[CqlType] = []
    for i, step in enumerate(steps):
        top = i == 0 and t.is_multicell  # a step into a non-frozen column's cells
        if step.kind in ("field", "component"):
            t = _field(t, step)
            nullable = True
        elif step.kind == "elements":
            if isinstance(t, (ListType, SetType, VectorType)):
                if isinstance(t, SetType) and top:
                    identity = True
                t = t.element
            elif isinstance(t, MapType):
                t = t.value
            else:
                raise PathError(
                    f"{t.cql()} has no elements ([] applies to lists, sets, vectors and map values)"
                )
            nullable = top
        else:
            if not isinstance(t, MapType):
                raise PathError(f"{t.cql()} has no keys ({{}} applies to maps)")
            t = t.key
            identity = True
            nullable = top
        types.append(t)
    return Target(t, identity, nullable and not identity, tuple(types))
