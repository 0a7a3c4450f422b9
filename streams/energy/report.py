"""The optimiser's report: per CUPS and scenario, what ``ioe settle`` gives under the
coefficients in force and under the optimised ones.

One format with one writer and one reader: ``ioe coefficients optimise --report`` writes it
(:func:`report_csv`, ``<OUT>.report.csv``) and the control centre shows it
(``dashboards.coefficient_report`` reads it with :func:`parse_report`), so what the operator
sees is exactly what the optimiser printed. Columns are read by name: a column added later does
not break an older reader.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, fields

SCENARIOS = ("current", "optimised")
#: the ``cups`` of the row that sums the community
COMMUNITY_ROW = "community"


class ReportError(ValueError):
    """A report file that cannot be read as the optimiser writes it; says where."""


@dataclass(frozen=True)
class ReportRow:
    """One CUPS (or the community) under one scenario, as settled."""

    scenario: str
    cups: str
    consumption_kwh: float
    assigned_kwh: float
    self_consumed_kwh: float
    surplus_kwh: float
    grid_import_kwh: float
    energy_term_eur: float
    savings_eur: float

    @property
    def self_consumption_ratio(self) -> float | None:
        """Share of the assigned solar energy used at home (for the community: of the whole
        generation, since the coefficients add up to 1)."""
        return self.self_consumed_kwh / self.assigned_kwh if self.assigned_kwh > 0 else None

    @property
    def coverage_ratio(self) -> float | None:
        """Share of the consumption the sun covered."""
        return (self.self_consumed_kwh / self.consumption_kwh if self.consumption_kwh > 0
                else None)


REPORT_HEADER = tuple(f.name for f in fields(ReportRow))
#: the figures of a row (every column after scenario and cups)
FIGURES = REPORT_HEADER[2:]


def report_csv(rows: Iterable[ReportRow]) -> str:
    lines = [";".join(REPORT_HEADER)]
    for r in rows:
        lines.append(";".join([r.scenario, r.cups] + [f"{getattr(r, f):.6f}" for f in FIGURES]))
    return "\n".join(lines) + "\n"


def parse_report(text: str, where: str) -> dict[tuple[str, str], ReportRow]:
    """(scenario, cups) → row; :class:`ReportError` names the file and line."""
    reader = csv.DictReader(io.StringIO(text), delimiter=";")
    missing = set(REPORT_HEADER) - set(reader.fieldnames or ())
    if missing:
        raise ReportError(f"{where}: not an optimiser report (no {', '.join(sorted(missing))})")
    out: dict[tuple[str, str], ReportRow] = {}
    for line, row in enumerate(reader, start=2):
        scenario = row["scenario"]
        if scenario not in SCENARIOS:
            raise ReportError(f"{where}:{line}: unknown scenario {scenario!r}")
        try:
            values = [float(row[name]) for name in FIGURES]
        except (TypeError, ValueError):
            raise ReportError(f"{where}:{line}: a figure is not a number") from None
        out[(scenario, row["cups"])] = ReportRow(scenario, row["cups"], *values)
    return out
