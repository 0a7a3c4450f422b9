"""Datadis downloads (CSV and JSON) → API-shaped rows, for ``ioe datadis import``.

The web download is ``;``-separated with a decimal comma. Its column names changed over time and
differ between the datadis.es download (``CUPS;Fecha;Hora;AE_kWh;energiaVertida_kWh;
energiaGenerada_kWh;energiaAutoconsumida_kWh;metodoObtencion``), older exports and distributor
portals (``Consumo_kWh``, ``Metodo_obtencion``, ``Energia_vertida_kWh``…; e-distribución's
``CUPS;Fecha;Hora;AE_kWh;AS_KWh;AE_AUTOCONS_kWh;REAL/ESTIMADO``, with ``R1_kVARh``…``R4_kVARh``
in 3.0TD files) and the API's own JSON keys (``consumptionKWh``, ``surplusEnergyKWh``…). Header names are therefore normalised
(accents, case and every separator removed: ``energiaVertida_kWh``, ``Energía vertida (kWh)``
and ``ENERGIA_VERTIDA_KWH`` are one name) and looked up in one table; a column that is not in
the table is an error naming it — silently dropping, say, the surplus column would settle a
self-consumption supply as if it exported nothing. Columns that are known but have no field in
the reading contract (reactive energy) are imported without and named in one log line.

``Fecha`` is ``YYYY/MM/DD`` (distributor portals use ``DD/MM/YYYY``; rows are given the API
form); ``Hora`` is ``HH:MM`` (end of the interval) or, in CNMC-style files, the ordinal of the
interval in the day (1…23/24/25). JSON downloads are either API-shaped (``timeCurve`` items or
a bare list of them) or the CSV columns as keys. A row without a CUPS is an error: a reading
without a supply id must never be published.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: normalised column name (see :func:`normalise_header`) → API field; every column Datadis
#: exports for hourly/quarter-hourly consumption
COLUMNS = {
    "cups": "cups",
    "fecha": "date", "date": "date", "dia": "date",
    "hora": "time", "time": "time",
    "consumokwh": "consumptionKWh", "consumo": "consumptionKWh", "aekwh": "consumptionKWh",
    "consumptionkwh": "consumptionKWh", "energiaconsumidakwh": "consumptionKWh",
    "metodoobtencion": "obtainMethod", "obtainmethod": "obtainMethod",
    "realestimado": "obtainMethod", "metodo": "obtainMethod",
    "energiavertidakwh": "surplusEnergyKWh", "askwh": "surplusEnergyKWh",
    "surplusenergykwh": "surplusEnergyKWh", "excedentekwh": "surplusEnergyKWh",
    "energiageneradakwh": "generationEnergyKWh", "generationenergykwh": "generationEnergyKWh",
    "energiaautoconsumidakwh": "selfConsumptionEnergyKWh", "aeautoconskwh": "selfConsumptionEnergyKWh",
    "selfconsumptionenergykwh": "selfConsumptionEnergyKWh",
    "estado": "obtainMethod",
}
#: columns Datadis and the distributors' portals export that the reading contract has no field
#: for: known, so a file carrying them is imported, and said once per file (never an error,
#: never silent); a column in neither table is an error
UNUSED_COLUMNS = {
    "r1kvarh": "reactive energy, quadrant 1", "r2kvarh": "reactive energy, quadrant 2",
    "r3kvarh": "reactive energy, quadrant 3", "r4kvarh": "reactive energy, quadrant 4",
}
log = logging.getLogger(__name__)
_DAY_FIRST = re.compile(r"^(\d{1,2})[/-](\d{1,2})[/-](\d{4})$")


class ImportFormatError(ValueError):
    """A file that is not a Datadis download."""


def normalise_header(name: str) -> str:
    """``Energía_Vertida (kWh)`` → ``energiavertidakwh``: accents, case and separators out."""
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", text.lower())


def header_map(names: list[Any]) -> dict[Any, str]:
    """Column name → API field for a whole header; an unknown column is an error."""
    fields: dict[Any, str] = {}
    unknown, unused = [], []
    for name in names:
        key = normalise_header(name) if name is not None else ""
        if not key:
            continue  # the empty column a trailing ';' makes
        field = COLUMNS.get(key)
        if field is not None:
            fields[name] = field
        elif key in UNUSED_COLUMNS:
            unused.append(f"{name} ({UNUSED_COLUMNS[key]})")
        else:
            unknown.append(str(name))
    if unknown:
        raise ImportFormatError(f"column(s) not understood: {', '.join(unknown)} (known: "
                                f"{', '.join(sorted(set(COLUMNS)))}); fix the header or "
                                "report the new Datadis column")
    if unused:
        log.info("Datadis file: column(s) not in the reading contract, not imported: %s",
                 ", ".join(unused))
    return fields


def _row(raw: dict[Any, Any], fields: dict[Any, str], where: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, value in raw.items():
        field = fields.get(name)
        if field:
            row[field] = value.strip() if isinstance(value, str) else value
    if "cups" not in row or "date" not in row or ("time" not in row):
        raise ImportFormatError(f"{where}: row without CUPS/date/time: {sorted(map(str, raw))}")
    if not str(row["cups"] or "").strip():
        raise ImportFormatError(f"{where}: empty CUPS (a reading needs its supply point)")
    day = _DAY_FIRST.match(str(row["date"]).strip())
    if day:  # distributor portals: DD/MM/YYYY → the API's YYYY/MM/DD
        row["date"] = f"{int(day.group(3)):04d}/{int(day.group(2)):02d}/{int(day.group(1)):02d}"
    hora = row.get("time")
    if isinstance(hora, int) or (isinstance(hora, str) and hora.isdigit()):
        row["ordinal"] = int(hora)  # CNMC style: n-th interval of the day
    return row


def read_csv(text: str) -> list[dict[str, Any]]:
    try:
        return _read_csv(text)
    except csv.Error as exc:  # a stray CR/NUL inside a field: not a Datadis download
        raise ImportFormatError(f"unreadable CSV: {exc}") from None


def _read_csv(text: str) -> list[dict[str, Any]]:
    text = text.lstrip("\ufeff")
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if first.count(";") >= first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    fields = header_map(list(reader.fieldnames or []))
    rows = []
    for raw in reader:
        if None in raw:  # more cells than header columns
            raise ImportFormatError(f"line {reader.line_num}: more values than columns")
        if any((v or "").strip() for v in raw.values()):
            rows.append(_row(raw, fields, f"line {reader.line_num}"))
    return rows


def read_json(text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except RecursionError:
        raise ImportFormatError("JSON nested too deeply") from None
    if isinstance(data, dict):
        data = data.get("timeCurve") or next(
            (v for v in data.values() if isinstance(v, list)), [])
    if not isinstance(data, list):
        raise ImportFormatError("JSON download must be a list or an object holding one")
    rows = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ImportFormatError(f"item {i}: expected an object, got {type(item).__name__}")
        rows.append(_row(item, header_map(list(item)), f"item {i}"))
    return rows


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
