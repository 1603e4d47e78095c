"""Masking row changes: every position, keys, collections, UDTs, nulls, invalid bytes, audit, mask_text."""

from __future__ import annotations

import copy
import dataclasses
import random
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from cdc_platform.changes.merge import Model, canonical
from cdc_platform.changes.records import CellChange, ChangeKind, RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.masking import MaskingError, MaskingPolicy, MemoryTokenVault, SecretSource
from cdc_platform.masking.algorithms import HmacSha256, civil_from_days
from cdc_platform.pipeline import decode_range
from cdc_platform.schema.model import DroppedColumn, Table
from cdc_platform.schema.types import NativeType
from cdc_platform.schema.values import EMPTY, InvalidValue, comparator_key, serialize
from cdc_platform.workload import DEFAULT_NODES, ShopWorkload, write_node
from cdc_platform_tests.conftest import REPO_ROOT
from cdc_platform_tests.masking.cases import (
    BORN,
    ENV,
    KEY,
    PEOPLE,
    PLAIN,
    SCHEMA,
    VK,
    config,
    element_removal,
    full_row,
    leaked,
    policy,
    range_delete,
)

HMAC_K1 = re.compile(r"^h1:k1:[0-9a-f]{64}$")
SHA = re.compile(r"^[0-9a-f]{64}$")
TOKEN = re.compile(r"^tok_[0-9a-f]{32}$")


def _cells(change: RowChange, column: str) -> list[CellChange]:
    return [c for c in change.cells if c.column == column]


def _one(change: RowChange, column: str) -> CellChange:
    (cell,) = (c for c in _cells(change, column) if not c.collection_deletion)
    return cell


def test_no_plaintext_survives_anywhere_in_a_change() -> None:
    changes = full_row() + range_delete() + element_removal()
    assert len(leaked(changes)) == len(PLAIN) - 1  # every plaintext is in the input
    assert leaked(policy().mask(PEOPLE, changes).changes) == set()


def test_masking_is_deterministic_and_never_mutates_its_input() -> None:
    changes = full_row() + range_delete() + element_removal()
    before = copy.deepcopy(changes)
    first = policy().mask(PEOPLE, changes).changes
    second = policy().mask(PEOPLE, changes).changes  # another policy object (another process)
    assert first == second
    assert changes == before
    assert all(a is not b for a, b in zip(first, changes, strict=True))


def test_keys_and_bounds_are_masked_consistently() -> None:
    static, row = policy().mask(PEOPLE, full_row()).changes
    (rd,) = policy().mask(PEOPLE, range_delete()).changes
    assert static.kind is ChangeKind.STATIC_ROW
    pk = row.partition_key
    assert pk["tenant"] == "acme" and HMAC_K1.match(pk["email"])
    assert static.partition_key == pk == rd.partition_key
    assert SHA.match(row.clustering["handle"])
    assert rd.range_start is not None and rd.range_end is not None
    assert rd.range_start.clustering == row.clustering  # the same plaintext bound, the same masked bound
    assert SHA.match(rd.range_end.clustering["handle"]) and rd.range_end.inclusive
    other = dict(KEY, email="someone.else@example.org")
    b = UpdateBuilder(PEOPLE, other).insert({"handle": PLAIN["handle"]}, {"kept": "x"}, 5)
    (masked_other,) = policy().mask(PEOPLE, list(changes_of_update(b.build()))).changes
    assert masked_other.partition_key["email"] != pk["email"]


def test_every_kind_of_cell_is_masked_in_place() -> None:
    p = policy()
    static, row = p.mask(PEOPLE, full_row()).changes
    assert HMAC_K1.match(_one(static, "static_email").value)
    assert TOKEN.match(_one(row, "name").value)
    assert _one(row, "code").value == "********DE"
    assert civil_from_days(_one(row, "born").value) == (1980, 1, 1)
    assert _one(row, "visited").value == 1_767_225_600_000  # 2026-01-01 00:00 UTC
    assert (_one(row, "score").value, _one(row, "tiny").value) == (40, -128)
    assert str(_one(row, "balance").value) == "12.0" and _one(row, "ratio").value == 0.5
    assert str(_one(row, "ip").value) == "192.0.2.0"
    for column in ("note", "raw"):  # redacted to null: a cell tombstone at the cell's timestamp
        cell = _one(row, column)
        assert cell.deleted and cell.value is None and cell.timestamp == 1_000_000
    contact = _one(row, "contact").value
    assert contact == {
        "email": "************@navy.example",
        "phone": "************7788",
        "since": BORN,  # no rule on contact.since
        "Nick": "[nick]",
    }
    live = {c.path: c for c in _cells(row, "live_contact") if not c.collection_deletion}
    assert HMAC_K1.match(live["email"].value)
    assert live["since"].value == BORN - 20 and not live["since"].deleted
    assert live["phone"].deleted and live["phone"].value is None
    (email_cell,) = [c for c in _cells(row, "emails") if not c.collection_deletion]
    assert HMAC_K1.match(email_cell.value) and isinstance(email_cell.path, uuid.UUID)
    (alias,) = [c for c in _cells(row, "aliases") if not c.collection_deletion]
    assert SHA.match(alias.path) and alias.value is None
    (phone,) = [c for c in _cells(row, "phones") if not c.collection_deletion]
    assert HMAC_K1.match(phone.path) and phone.value == "**************58"
    frozen_aliases = _one(row, "frozen_aliases").value
    assert frozen_aliases == sorted(
        frozen_aliases, key=lambda v: comparator_key(NativeType("text"))(v.encode())
    )
    assert frozen_aliases == ["******************s", "*************s"]  # re-sorted after masking
    ((label, number),) = _one(row, "frozen_phones").value
    assert TOKEN.match(label) and number == "x"
    ((item, qty),) = [c.value for c in _cells(row, "history") if not c.collection_deletion]
    assert HMAC_K1.match(item) and qty == 3
    # The whole non-frozen map is redacted: its elements go, its overwrite (deletion) stays.
    assert [c.collection_deletion for c in _cells(row, "lookup")] == [True]
    assert _one(row, "kept").value == "kept as is"


def test_element_removals_target_the_masked_elements() -> None:
    p = policy()
    row = p.mask(PEOPLE, full_row()).changes[1]
    set_removal, map_removal = p.mask(PEOPLE, element_removal()).changes
    (added,) = [c.path for c in _cells(row, "aliases") if not c.collection_deletion]
    (removed,) = [c for c in set_removal.cells]
    assert removed.deleted and removed.path == added
    (put,) = [c.path for c in _cells(row, "phones") if not c.collection_deletion]
    (deleted,) = [c for c in map_removal.cells]
    assert deleted.deleted and deleted.path == put


def test_tombstones_nulls_and_empty_values_are_left_alone() -> None:
    b = UpdateBuilder(PEOPLE, KEY, now=1_700_000_000)
    b.delete_columns({"handle": "h"}, ["note", "contact", "live_contact", "emails", "lookup"], 7)
    b.update({"handle": "h"}, {"name": None, "born": None}, 7)
    deletion = next(changes_of_update(b.build()))
    masked = policy().mask(PEOPLE, [deletion]).changes[0]
    assert masked.cells == deletion.cells
    assert all(c.deleted for c in masked.cells)
    empty = dataclasses.replace(deletion, cells=(CellChange("born", EMPTY, 9), CellChange("note", "", 9)))
    out = policy().mask(PEOPLE, [empty]).changes[0]
    assert out.cells[0] == CellChange("born", EMPTY, 9)  # EMPTY carries nothing
    assert out.cells[1].deleted  # an empty text is a value: redacted like any other
    (delete_partition,) = changes_of_update(UpdateBuilder(PEOPLE, KEY).delete_partition(9).build())
    masked_partition = policy().mask(PEOPLE, [delete_partition]).changes[0]
    assert masked_partition.deletion_timestamp == 9 and HMAC_K1.match(masked_partition.partition_key["email"])


def test_redacting_an_expiring_cell_gives_a_tombstone_with_a_deterministic_deletion_time() -> None:
    row = policy().mask(PEOPLE, full_row(ttl=600)).changes[1]
    note = _one(row, "note")
    assert note.deleted and note.ttl is None and note.local_deletion_time == 1_700_000_000
    plain_row = full_row(ttl=600)[1]
    assert _one(plain_row, "note").local_deletion_time == 1_700_000_600  # the expiry it replaced


def _invalid(text: str) -> InvalidValue:
    return InvalidValue(text.encode(), "text is not valid UTF-8 at byte 0")


def test_undecodable_values_are_nulled_or_masked_and_counted() -> None:
    p = policy()
    raw_email = "bad-" + PLAIN["email"]
    change = RowChange(
        ChangeKind.ROW,
        "pii",
        "people",
        partition_key={"tenant": "acme", "email": _invalid(raw_email)},
        clustering={"handle": _invalid("bad-" + PLAIN["handle"])},
        cells=(
            CellChange("note", _invalid("bad-" + PLAIN["note"]), 10),
            CellChange(
                "contact", _invalid("bad-" + PLAIN["contact_email"]), 10, ttl=60, local_deletion_time=1000
            ),
            CellChange("live_contact", _invalid("bad-" + PLAIN["live_email"]), 10, path="email"),
            CellChange("aliases", None, 10, path=_invalid("bad-" + PLAIN["alias"])),
            CellChange("live_contact", PLAIN["live_email"], 10, path=_invalid("bad-path")),
            CellChange("kept", _invalid("not masked"), 10),
        ),
        liveness_timestamp=10,
    )
    result = p.mask(PEOPLE, [change])
    (out,) = result.changes
    assert leaked(out) == set()
    key = out.partition_key["email"]
    assert isinstance(key, InvalidValue) and HMAC_K1.match(key.raw.decode())
    assert key == p.mask(PEOPLE, [change]).changes[0].partition_key["email"]  # deterministic
    assert SHA.match(out.clustering["handle"].raw.decode())
    note, contact, live, alias, kept = out.cells
    assert note.deleted and note.value is None
    assert contact.deleted and contact.local_deletion_time == 940  # written at expiry - ttl
    assert live.deleted and live.path == "email"
    assert isinstance(alias.path, InvalidValue) and SHA.match(alias.path.raw.decode())
    assert kept.value == _invalid("not masked")  # no rule: the quality stage deals with it
    invalid = {e.column_path: e.invalid_values for e in result.audit.entries if e.invalid_values}
    # The field cell with an undecodable path is dropped: it may hold any field's value.
    assert invalid == {
        "email": 1,
        "handle": 1,
        "note": 1,
        "contact.email": 1,
        "live_contact.email": 2,
        "aliases[]": 1,
    }
    assert result.audit.values_masked == 0


def test_audit_counts_per_rule() -> None:
    result = policy().mask(PEOPLE, full_row() + range_delete() + element_removal())
    counts = {e.column_path: e.values_masked for e in result.audit.entries}
    assert counts["email"] == 5  # the partition key of each of the 5 changes
    assert counts["handle"] == 5  # row + range start + range end + the 2 element removals
    assert counts["aliases[]"] == 2 and counts["phones{}"] == 2  # added, then removed
    assert counts["lookup"] == 1 and counts["name"] == 1 and counts["note"] == 1
    assert {e.column_path for e in result.audit.entries} == set(policy().masked_columns(PEOPLE))
    assert {e.key_id for e in result.audit.entries if e.algorithm == "hmac_sha256"} == {"k1"}
    assert {e.key_id for e in result.audit.entries if e.algorithm == "tokenize"} == {"vk"}
    meta = result.audit.as_metadata()
    assert meta["values_masked"] == sum(counts.values()) and meta["rules"]["email"]["key_id"] == "k1"
    assert leaked(meta) == set()


def test_tables_without_rules_pass_unchanged() -> None:
    other = Table("pii", "other", uuid.uuid4(), PEOPLE.columns)
    changes = full_row()
    result = policy().mask(other, changes)
    assert result.changes == changes and result.audit.entries == []


def test_key_rotation() -> None:
    old = policy(config({"email": "hmac_sha256"}, hmac={"key": "k0"}))
    new = policy(config({"email": "hmac_sha256"}, hmac={"key": "k1", "previous_keys": ["k0"]}))
    before = old.mask(PEOPLE, full_row()).changes[1].partition_key["email"]
    after = new.mask(PEOPLE, full_row()).changes[1].partition_key["email"]
    assert before.startswith("h1:k0:") and after.startswith("h1:k1:") and before != after
    assert new.hmac_candidates("pii.people.email", PLAIN["email"]) == [after, before]
    rule = new.rules("pii.people")[0]
    assert rule.masker.check(before) is None and rule.masker.check(after) is None  # both stay valid
    # A rule can name its own key (and then only its own previous keys).
    own = policy(config({"email": {"algorithm": "hmac_sha256", "key": "k0"}}))
    assert own.hmac_candidates("pii.people.email", PLAIN["email"]) == [before]
    with pytest.raises(KeyError, match="not hmac_sha256"):
        policy().hmac_candidates("pii.people.handle", "x")


def test_mask_text_replaces_the_plaintexts_masked_in_this_process() -> None:
    p = policy()
    line = f"row {PLAIN['email']} rejected: name {PLAIN['name']!r} born 1980-01-21, ip 192.0.2.77"
    assert p.mask_text(line) == line  # nothing masked yet: nothing known
    row = p.mask(PEOPLE, full_row()).changes[1]
    scrubbed = p.mask_text(line)
    assert PLAIN["email"] not in scrubbed and PLAIN["name"] not in scrubbed
    assert row.partition_key["email"] in scrubbed and _one(row, "name").value in scrubbed
    assert "born 1980-01-01" in scrubbed and "ip 192.0.2.0" in scrubbed
    assert p.mask_text("nothing personal here") == "nothing personal here"
    note = p.mask_text(f"note: {PLAIN['note']}.")
    assert note == "note: [REDACTED]."
    assert p.mask_text(f"raw 0x{PLAIN['note'].encode().hex()}") != f"raw 0x{PLAIN['note'].encode().hex()}"


def test_mask_text_memory_is_bounded() -> None:
    p = policy(config({"note": "sha256"}, mask_text={"capacity": 2, "min_length": 4}))
    for i, text in enumerate(["first-secret", "second-secret", "third-secret", "abc"]):
        b = UpdateBuilder(PEOPLE, KEY).update({"handle": "h"}, {"note": text}, 10 + i)
        p.mask(PEOPLE, list(changes_of_update(b.build())))
    out = p.mask_text("first-secret second-secret third-secret abc")
    assert out.startswith("first-secret ")  # forgotten (least recently masked)
    assert "second-secret" not in out and "third-secret" not in out
    assert out.endswith(" abc")  # shorter than min_length: never remembered


def test_cells_of_a_dropped_masked_column_are_dropped() -> None:
    p = policy(config({"note": "hmac_sha256"}))
    evolved = Table(
        "pii",
        "people",
        PEOPLE.id,
        [c for c in PEOPLE.columns if c.name != "note"],
        dropped={"note": DroppedColumn("note", NativeType("text"), 5_000_000)},
    )
    row = full_row()[1]
    result = p.mask(evolved, [row])
    assert not _cells(result.changes[0], "note") and _cells(row, "note")
    assert result.audit.entries[0].values_masked == 1


def test_tokenize_rules_need_a_vault() -> None:
    p = MaskingPolicy.from_dict(config(), SCHEMA, secrets=SecretSource(environ=ENV))
    with pytest.raises(MaskingError, match="tokenize rules need a token vault"):
        p.mask(PEOPLE, full_row())


def test_tokens_reach_the_vault_once() -> None:
    vault = MemoryTokenVault()
    p = policy(vault=vault)
    p.mask(PEOPLE, full_row())
    stored = dict(vault.entries)
    assert len(stored) == 2  # name and the frozen map key
    p.mask(PEOPLE, full_row())
    assert vault.entries == stored


# --------------------------------------------------------------------------------------------
# The shop workload, decoded from segments of three replicas


def _shop_policy() -> MaskingPolicy:
    env = {
        "CDC_MASK_KEY_2026": "shop-test-key-2026-0123456789",
        "CDC_MASK_KEY_2025": "shop-test-key-2025-0123456789",
        "CDC_VAULT_KEY_2026": "shop-test-vault-0123456789",
    }
    schema = ShopWorkload().schema
    return MaskingPolicy.from_file(
        REPO_ROOT / "config" / "masking.yaml",
        schema,
        secrets=SecretSource(environ=env),
        vault=MemoryTokenVault(),
    )


def test_replicas_of_the_shop_workload_converge_after_masking(tmp_path: Path) -> None:
    workload = ShopWorkload(seed=11)
    mutations = list(workload.mutations(400))
    p = _shop_policy()
    schema = workload.schema
    masked: dict[str, list[RowChange]] = {}
    plain: dict[str, list[RowChange]] = {}
    for layout in DEFAULT_NODES:
        for path in write_node(tmp_path / layout.name, mutations, layout, segment_size=64 * 1024):
            decoded = decode_range(path, schema, node=layout.name)
            for name, changes in decoded.changes.items():
                masked.setdefault(name, []).extend(p.mask(schema.table(name), changes).changes)
                if layout.name == "node1":
                    plain.setdefault(name, []).extend(changes)
    assert set(masked) == {
        "shop.customers",
        "shop.orders",
        "shop.order_events",
        "shop.sessions",
        "shop.inventory",
    }
    found: set[str] = set()
    for changes in masked.values():
        found |= leaked(changes, workload.pii_seen)
    assert found == set()
    assert leaked(plain["shop.customers"], workload.pii_seen)  # the plaintexts were there
    now = 1_767_300_000
    for name, changes in masked.items():
        table = schema.table(name)
        one_replica = [c for c in changes if c.node == "node1"]
        shuffled = list(changes)
        random.Random(5).shuffle(shuffled)
        a, b, unmasked = Model([table]), Model([table]), Model([table])
        a.apply(one_replica)
        b.apply(shuffled)
        unmasked.apply(plain[name])
        state = canonical(table, a.visible(name, now))
        assert state == canonical(table, b.visible(name, now))  # replicas, any order: one state
        # Masked keys stay distinct: as many rows as without masking.
        assert len(state) == len(canonical(table, unmasked.visible(name, now)))


def test_hmac_candidates_find_rows_masked_before_a_rotation() -> None:
    p = _shop_policy()
    rule = next(r for r in p.rules("shop.customers") if r.path == "email")
    assert isinstance(rule.masker, HmacSha256) and rule.masker.key_ids == {"mask-2026", "mask-2025"}
    values: list[Any] = p.hmac_candidates("shop.customers.email", "ada@example.com")
    assert [v.split(":")[1] for v in values] == ["mask-2026", "mask-2025"]
    assert serialize(NativeType("text"), values[0])  # a valid text value


def test_an_undecodable_tokenized_key_stays_reversible() -> None:
    from cdc_platform.masking import SecretKey

    vault = MemoryTokenVault()
    p = policy(config({"handle": "tokenize"}), vault=vault)
    raw = b"\xff" + PLAIN["handle"].encode()
    change = RowChange(
        ChangeKind.ROW,
        "pii",
        "people",
        partition_key=dict(KEY),
        clustering={"handle": InvalidValue(raw, "text is not valid UTF-8 at byte 0")},
        liveness_timestamp=1,
    )
    (out,) = p.mask(PEOPLE, [change]).changes
    token = out.clustering["handle"].raw.decode()
    assert TOKEN.match(token)
    assert vault.detokenize([token], SecretKey("vk", VK.encode(), "test")) == {token: "0x" + raw.hex()}
