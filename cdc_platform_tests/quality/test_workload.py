"""The demo workload through config/quality.yaml: exactly the planted invalid values are quarantined."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from cdc_platform.changes.records import RowChange, changes_of_update
from cdc_platform.quality import QualityConfig, Validator
from cdc_platform.workload import ShopWorkload

REPO = Path(__file__).resolve().parents[2]


def _planted(change: RowChange) -> bool:
    values = {c.column: c.value for c in change.cells if not c.deleted}
    email = values.get("email")
    if isinstance(email, str) and "@" not in email:
        return True
    points = values.get("loyalty_points") if change.table == "customers" else values.get("quantity")
    return isinstance(points, int) and points < 0


def test_shop_workload() -> None:
    workload = ShopWorkload(seed=5, invalid_rate=0.05)
    by_table: dict[str, list[RowChange]] = defaultdict(list)
    for mutation in workload.mutations(1500):
        for update in mutation.updates:
            by_table[update.table.qualified_name].extend(
                changes_of_update(update, segment_id=1, position=len(by_table))
            )
    validator = Validator(workload.schema, QualityConfig.from_file(REPO / "config" / "quality.yaml"))
    planted_total = 0
    for name, changes in sorted(by_table.items()):
        outcome = validator.validate(workload.schema.table(name), changes)
        planted = [c for c in changes if _planted(c)]
        planted_total += len(planted)
        assert [r.change for r in outcome.rejected] == planted, name
        assert outcome.accepted == [c for c in changes if not _planted(c)], name
        for r in outcome.rejected:
            assert {f.column for f in r.failures} <= {"email", "loyalty_points", "quantity"}
            assert all(f.severity == "error" for f in r.failures)
    assert planted_total > 20  # the workload did plant bad values in these tables
