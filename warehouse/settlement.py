"""The monthly settlement per member, fast and still right under replay.

``FINAL`` makes every query pay for deduplication at read time: on 18.16 it merges all parts of
the table in one stream (a year of 500 members: ~10× a plain scan). But deduplication is only
needed where duplicates can exist. A partition whose data is a *single part produced by a
merge* (level > 0) has none: ReplacingMergeTree keeps one row per sort key when it merges. So:

* :func:`compact_closed_months` runs ``OPTIMIZE TABLE … PARTITION … FINAL`` on closed months
  (a maintenance job, e.g. nightly; it rewrites only partitions with more than one part);
* :func:`settlement` reads, from ``system.parts``, which partitions are such single merged
  parts, scans those *without* FINAL and the others (the open month, or a closed month that a
  late replay or correction touched since: it has a new part again) *with* FINAL, and sums the
  two branches. The decision is made per query from the live part list, so a replay arriving
  at any moment is still counted once — the worst case is FINAL speed, never a wrong total.

Other variants are measured in bench/bench_clickhouse.py (``argMax`` per natural key, FINAL
per month); their SQL is here so the bench and the tests run the same text.
"""

from __future__ import annotations

from typing import Any

from ioe.clickhouse import Engine

_MONTH = "toStartOfMonth(toDate(toTimeZone(interval_start, 'Europe/Madrid')))"
_SUMS = ("sum(consumption_wh) / 1000 AS consumption_kwh, sum(assigned_wh) / 1000 AS assigned_kwh, "
         "sum(self_consumed_wh) / 1000 AS self_consumed_kwh, sum(surplus_wh) / 1000 AS surplus_kwh, "
         "sum(import_wh) / 1000 AS import_kwh")
_OUTER = ("sum(consumption_kwh), sum(assigned_kwh), sum(self_consumed_kwh), sum(surplus_kwh), "
          "sum(import_kwh)")
_WHERE = "community_id = %(community)s AND interval_s = 3600"

# Every variant returns (member_id, month, consumption, assigned, self-consumed, surplus, import)
# in kWh, ordered by member and month.
VARIANTS: dict[str, str] = {
    "plain": (f"SELECT member_id, {_MONTH} AS month, {_SUMS} FROM {{db}}.balances "
              f"WHERE {_WHERE} GROUP BY member_id, month ORDER BY member_id, month"),
    "final": (f"SELECT member_id, {_MONTH} AS month, {_SUMS} FROM {{db}}.balances FINAL "
              f"WHERE {_WHERE} GROUP BY member_id, month ORDER BY member_id, month"),
    "argmax": (
        f"SELECT member_id, {_MONTH} AS month, {_SUMS} FROM ("
        "SELECT member_id, interval_start, argMax(consumption_wh, version) AS consumption_wh, "
        "argMax(assigned_wh, version) AS assigned_wh, "
        "argMax(self_consumed_wh, version) AS self_consumed_wh, "
        "argMax(surplus_wh, version) AS surplus_wh, argMax(import_wh, version) AS import_wh "
        f"FROM {{db}}.balances WHERE {_WHERE} GROUP BY member_id, interval_start) "
        "GROUP BY member_id, month ORDER BY member_id, month"),
}


def _partition_branch(db: str, partitions: list[int], final: bool) -> str:
    months = ", ".join(str(int(p)) for p in partitions)
    return (f"SELECT member_id, {_MONTH} AS month, {_SUMS} FROM {db}.balances "
            f"{'FINAL ' if final else ''}WHERE {_WHERE} "
            f"AND toYYYYMM(interval_start) IN ({months}) GROUP BY member_id, month")


def compacted_partitions(engine: Engine, db: str) -> tuple[list[int], list[int]]:
    """(partitions that are one merged part — no duplicates possible, all other partitions)."""
    rows = engine.execute(
        "SELECT partition, count(), min(level) FROM system.parts WHERE database = %(d)s "
        "AND table = 'balances' AND active GROUP BY partition", {"d": db})
    clean = sorted(int(str(p).strip("'")) for p, parts, level in rows
                   if int(parts) == 1 and int(level) > 0)
    other = sorted(int(str(p).strip("'")) for p, parts, level in rows
                   if not (int(parts) == 1 and int(level) > 0))
    return clean, other


def settlement_sql(db: str, clean: list[int], other: list[int]) -> str:
    """The settlement over the given partition split (no FINAL on ``clean`` ones)."""
    branches = ([_partition_branch(db, clean, final=False)] if clean else []) + \
               ([_partition_branch(db, other, final=True)] if other else [])
    if not branches:
        return VARIANTS["final"].replace("{db}", db)
    union = " UNION ALL ".join(branches)
    return (f"SELECT member_id, month, {_OUTER} FROM ({union}) "
            "GROUP BY member_id, month ORDER BY member_id, month")


# From here on FINAL itself merges partition by partition, in parallel, and skips partitions
# that are one merged part: measured on 26.9 (bench), plain FINAL is within noise of the split
# query, and simpler.
FINAL_IS_PARTITION_AWARE: tuple[int, ...] = (23, 8)


def settlement(engine: Engine, db: str, community: str,
               split: bool | None = None) -> list[tuple[Any, ...]]:
    """The monthly settlement, scanning compacted months without FINAL (see module doc).
    ``split=None`` chooses by engine version; the result is the same either way."""
    if split is None:
        split = engine.version() < FINAL_IS_PARTITION_AWARE
    if not split:
        return engine.execute(VARIANTS["final"].replace("{db}", db), {"community": community})
    clean, other = compacted_partitions(engine, db)
    return engine.execute(settlement_sql(db, clean, other), {"community": community})


def compact_closed_months(engine: Engine, db: str, before_yyyymm: int) -> list[int]:
    """``OPTIMIZE … FINAL`` every partition before ``before_yyyymm`` that is not one merged part
    yet; returns those rewritten. Safe to run any time (a merge never changes FINAL results)."""
    clean, other = compacted_partitions(engine, db)
    done = []
    for partition in other:
        if partition < before_yyyymm:
            engine.execute(f"OPTIMIZE TABLE {db}.balances PARTITION {partition} FINAL")
            done.append(partition)
    return done
