"""Datadis downloads (CSV and JSON) → API-shaped rows, for ``ioe datadis import``.

The web download is ``;``-separated with a decimal comma, columns
``CUPS;Fecha;Hora;Consumo_kWh;Metodo_obtencion`` and, for self-consumption supplies,
``Energia_vertida_kWh;Energia_generada_kWh;Energia_autoconsumida_kWh``. ``Fecha`` is
``YYYY/MM/DD`` (distributor portals use ``DD/MM/YYYY``); ``Hora`` is ``HH:MM`` (end of the
interval) or, in CNMC-style files, the ordinal of the hour in the day (1…23/24/25), which
needs no label walking at all. JSON downloads are either API-shaped (``timeCurve`` items or a
bare list of them) or the CSV columns as keys. Column names go through an alias table so
small spelling differences (accents, case, ``AE_kWh``) do not break the import.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: normalized column name → API field
ALIASES = {
    "cups": "cups",
    "fecha": "date", "date": "date",
    "hora": "time", "time": "time",
    "consumo_kwh": "consumptionKWh", "consumo": "consumptionKWh", "ae_kwh": "consumptionKWh",
    "consumptionkwh": "consumptionKWh",
    "metodo_obtencion": "obtainMethod", "metodoobtencion": "obtainMethod",
    "obtainmethod": "obtainMethod", "real/estimado": "obtainMethod",
    "energia_vertida_kwh": "surplusEnergyKWh", "as_kwh": "surplusEnergyKWh",
    "surplusenergykwh": "surplusEnergyKWh",
    "energia_generada_kwh": "generationEnergyKWh", "generationenergykwh": "generationEnergyKWh",
    "energia_autoconsumida_kwh": "selfConsumptionEnergyKWh",
    "selfconsumptionenergykwh": "selfConsumptionEnergyKWh",
}


class ImportFormatError(ValueError):
    """A file that is not a Datadis download."""


def _norm(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return text.strip().strip('"').lower().replace(" ", "_")


def _row(raw: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, value in raw.items():
        field = ALIASES.get(_norm(str(name)))
        if field:
            row[field] = value.strip() if isinstance(value, str) else value
    hora = row.get("time")
    if isinstance(hora, int) or (isinstance(hora, str) and hora.isdigit()):
        row["ordinal"] = int(hora)  # CNMC style: n-th hour of the day
    if "cups" not in row or "date" not in row or ("time" not in row):
        raise ImportFormatError(f"row without CUPS/date/time: {sorted(raw)}")
    return row


def read_csv(text: str) -> list[dict[str, Any]]:
    text = text.lstrip("\ufeff")
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if first.count(";") >= first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    return [_row(r) for r in reader if any((v or "").strip() for v in r.values())]


def read_json(text: str) -> list[dict[str, Any]]:
    data = json.loads(text)
    if isinstance(data, dict):
        data = data.get("timeCurve") or next(
            (v for v in data.values() if isinstance(v, list)), [])
    if not isinstance(data, list):
        raise ImportFormatError("JSON download must be a list or an object holding one")
    return [_row(r) for r in data if isinstance(r, dict)]


READERS = {".csv": read_csv, ".json": read_json}


def find_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in READERS)


def read_file(path: Path) -> list[dict[str, Any]]:
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ImportFormatError(f"unsupported file type {path.suffix!r}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # downloads opened and saved in a spreadsheet on Windows
        text = raw.decode("latin-1")
    return reader(text)


def group_by_cups(rows: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Rows per CUPS, keeping each CUPS's rows in file order (the order is the meaning)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row["cups"]).strip().upper(), []).append(row)
    yield from groups.items()
