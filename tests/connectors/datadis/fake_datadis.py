"""A faithful local stand-in for the Datadis private API (the public service is unreachable).

Reproduces what the connector must survive (issue 5):
- ``POST /nikola-auth/tokens/login`` (form ``username``/``password``) → a bare JWT; tokens can
  be expired at will (→ 401 until the client logs in again);
- v1 endpoints (bare arrays) and v2 endpoints (``{"timeCurve"|"supplies": […],
  "distributorError": […]}``);
- hour labels as Datadis writes them, built here from the UTC hours (independently of the
  connector): the October change day has 25 rows with ``03:00`` twice, the March day 23 rows
  without ``03:00``, the last hour is ``24:00``;
- ``Estimada`` hours, null consumptions, an i-DE style extra ``00:00`` row (distributor 8);
- the 24 h rule: the same query again within 24 h → 429, and failed calls count too
  (``count_failed``);
- scripted failures per endpoint: a 502 HTML page, an HTML page inside a 200, a slow answer,
  a ``distributorError``.

Every request is recorded (path, query, headers, status) so tests can count calls.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

MADRID = ZoneInfo("Europe/Madrid")
DAY_S = 24 * 3600

BAD_GATEWAY_HTML = (b"<html><head><title>502 Bad Gateway</title></head><body><center>"
                    b"<h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>")
MAINTENANCE_HTML = b"<!DOCTYPE html><html><body><h1>Estamos en mantenimiento</h1></body></html>"


@dataclass
class Supply:
    cups: str  # as Datadis spells it (may carry the 2-char suffix the registry omits)
    distributor_code: str = "2"
    point_type: int = 5
    surplus: bool = False  # self-consumption supply: surplusEnergyKWh filled
    authorized_by: str | None = None  # NIF of the holder who authorized the account


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0


def value_kwh(cups: str, end_ms: int) -> float:
    """Deterministic consumption of an interval (tests recompute it)."""
    hour = end_ms // 3_600_000
    seed = sum(cups.encode()) % 13
    return round(0.05 + ((hour * 7 + seed) % 23) / 20, 3)


def surplus_kwh(cups: str, end_ms: int) -> float:
    hour = end_ms // 3_600_000
    return round(((hour * 3) % 5) / 10, 3)


def is_estimated(end_ms: int) -> bool:
    return (end_ms // 3_600_000) % 11 == 0


def is_null(end_ms: int) -> bool:
    return (end_ms // 3_600_000) % 97 == 0


def label_rows(year: int, month: int, step_s: int) -> list[tuple[str, str, int]]:
    """(date, time, end_ms) of every interval of a local month, Datadis-style.

    Walks the UTC intervals; the label is the local date and wall time of the interval's start
    plus its length (``24:00`` for the last one of a day).
    """
    start = datetime(year, month, 1, tzinfo=MADRID).astimezone(UTC)
    nxt = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=MADRID).astimezone(UTC)
    rows = []
    t = start
    while t < nxt:
        local = t.astimezone(MADRID)
        minutes = local.hour * 60 + local.minute + step_s // 60
        rows.append((local.strftime("%Y/%m/%d"), f"{minutes // 60:02d}:{minutes % 60:02d}",
                     int((t + timedelta(seconds=step_s)).timestamp() * 1000)))
        t += timedelta(seconds=step_s)
    return rows


@dataclass
class FakeState:
    users: dict[str, str]
    supplies: list[Supply]
    count_failed: bool = True
    delay_s: float = 0.0  # every data answer waits this long (kill tests)
    slow_s: float = 2.0  # a scripted "slow" answer waits this long
    data_until_ms: int | None = None  # no data after this instant ("not yet")
    clock_offset_s: float = 0.0
    tokens: set[str] = field(default_factory=set)
    issued: list[str] = field(default_factory=list)  # every token ever handed out
    asked: dict[str, float] = field(default_factory=dict)
    scripts: dict[str, deque[str]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.time() + self.clock_offset_s


class FakeDatadis:
    """The server; use as a context manager. ``url`` is its base URL."""

    def __init__(self, *, users: dict[str, str], supplies: list[Supply],
                 count_failed: bool = True) -> None:
        self.state = FakeState(users=dict(users), supplies=list(supplies),
                               count_failed=count_failed)
        state = self.state

        class Handler(_Handler):
            fake = state

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeDatadis:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # -- knobs ----------------------------------------------------------------------------
    def expire_tokens(self) -> None:
        with self.state.lock:
            self.state.tokens.clear()

    def script(self, endpoint: str, *behaviours: str) -> None:
        """Next answers of ``endpoint``: 502, html200, slow, distributor_error, 500, and
        (get-supplies-v2) partial_distributor_error: the supplies of I-DE (code 8) plus the
        code-2 error of E-DISTRIBUCIÓN (2) that holds none of the NIF's supplies."""
        with self.state.lock:
            self.state.scripts.setdefault(endpoint, deque()).extend(behaviours)

    def advance(self, seconds: float) -> None:
        self.state.clock_offset_s += seconds

    # -- what happened --------------------------------------------------------------------
    def calls(self, path_part: str = "", status: int | None = None) -> list[Call]:
        with self.state.lock:
            return [c for c in self.state.calls if path_part in c.path
                    and (status is None or c.status == status)]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeState
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep quiet
        pass

    # -- plumbing -------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # client timed out and left
            pass

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _record(self, method: str) -> Call:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        call = Call(method, parts.path, query, {k: v for k, v in self.headers.items()})
        with self.fake.lock:
            self.fake.calls.append(call)
        return call

    # -- login ----------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802 - http.server API
        call = self._record("POST")
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if call.path != "/nikola-auth/tokens/login":
            call.status = 404
            return self._send(404, b"not found", "text/plain")
        if self.fake.users.get(form.get("username", "")) != form.get("password"):
            call.status = 401
            return self._send(401, b"Bad credentials", "text/plain")
        token = _jwt(form["username"])
        with self.fake.lock:
            self.fake.tokens.add(token)
            self.fake.issued.append(token)
        call.status = 200
        self._send(200, token.encode(), "text/plain;charset=UTF-8")

    # -- API --------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        call = self._record("GET")
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        with self.fake.lock:
            valid = token in self.fake.tokens
        if not valid:
            call.status = 401
            return self._json(401, {"error": "Unauthorized", "message": "JWT expired"})
        endpoint = call.path.rsplit("/", 1)[-1]
        handler = ENDPOINTS.get(endpoint)
        if handler is None:
            call.status = 404
            return self._json(404, {"error": "Not Found"})
        key = endpoint + "?" + "&".join(f"{k}={v}" for k, v in sorted(call.query.items()))
        with self.fake.lock:
            now = self.fake.now()
            before = self.fake.asked.get(key)
            repeated = before is not None and now - before < DAY_S
            script = self.fake.scripts.get(endpoint)
            behaviour = script.popleft() if script else None
            counts = behaviour is None or self.fake.count_failed
            if not repeated and counts:
                self.fake.asked[key] = now
        if repeated:
            call.status = 429
            return self._json(429, {"timestamp": int(now * 1000), "status": 429,
                                    "error": "Too Many Requests",
                                    "message": "Consulta realizada en las últimas 24 horas"})
        if endpoint.startswith("get-consumption") and self.fake.delay_s:
            time.sleep(self.fake.delay_s)
        if behaviour == "slow":
            time.sleep(self.fake.slow_s)
        elif behaviour == "502":
            call.status = 502
            return self._send(502, BAD_GATEWAY_HTML, "text/html")
        elif behaviour == "500":
            call.status = 500
            return self._json(500, {"status": 500, "error": "Internal Server Error"})
        elif behaviour == "html200":
            call.status = 200
            return self._send(200, MAINTENANCE_HTML, "text/html;charset=UTF-8")
        items = handler(self.fake, call.query)
        if isinstance(items, tuple):  # (status, body) refusal
            call.status = items[0]
            return self._json(*items)
        v2 = endpoint.endswith("-v2")
        errors = []
        if behaviour == "distributor_error":
            items = []
            errors = [{"distributorCode": call.query.get("distributorCode", "2"),
                       "distributorName": "E-DISTRIBUCIÓN", "errorCode": "500",
                       "errorDescription": "Error en la comunicación con la distribuidora"}]
        if behaviour == "partial_distributor_error":
            # shape of a real get-supplies-v2 answer when one distributor has nothing for the
            # NIF: the others' supplies plus its error (Datadis API v2 documentation,
            # "distributorError" list with distributorCode/Name, errorCode, errorDescription)
            items = [i for i in items if str(i.get("distributorCode")) != "2"]
            errors = [{"distributorCode": "2", "distributorName": "E-DISTRIBUCIÓN",
                       "distributorCups": None, "errorCode": "2",
                       "errorDescription": "El distribuidor no puede facilitar información "
                                           "a ese NIF"}]
        call.status = 200
        if v2:
            list_key = {"get-supplies-v2": "supplies",
                        "get-contract-detail-v2": "contract"}.get(endpoint, "timeCurve")
            return self._json(200, {list_key: items, "distributorError": errors})
        if errors:  # v1 has no wrapper: distributors' failures show as an error body
            call.status = 500
            return self._json(500, {"status": 500, "error": errors[0]["errorDescription"]})
        self._json(200, items)


def _jwt(subject: str) -> str:
    def b64(data: dict[str, Any] | bytes) -> str:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    now = int(time.time())
    return ".".join([b64({"alg": "HS256", "typ": "JWT"}),
                     b64({"sub": subject, "iat": now, "exp": now + DAY_S}),
                     b64(secrets.token_bytes(24))])


def _visible(state: FakeState, nif: str | None) -> list[Supply]:
    return [s for s in state.supplies if s.authorized_by == nif]


def _supplies(state: FakeState, query: dict[str, str]) -> Any:
    return [{"address": "CALLE FALSA 123", "cups": s.cups, "postalCode": "46020",
             "province": "Valencia", "municipality": "VALENCIA",
             "distributor": "I-DE" if s.distributor_code == "8" else "E-DISTRIBUCIÓN",
             "validDateFrom": "2020/01/01", "validDateTo": "", "pointType": s.point_type,
             "distributorCode": s.distributor_code}
            for s in _visible(state, query.get("authorizedNif"))]


def _contract(state: FakeState, query: dict[str, str]) -> Any:
    supply = _find(state, query)
    if supply is None:
        return 403, {"status": 403, "error": "Forbidden"}
    return [{"cups": supply.cups, "distributor": "E-DISTRIBUCIÓN", "accessFare": "2.0TD",
             "contractedPowerkW": [3.45, 3.45], "distributorCode": supply.distributor_code}]


def _find(state: FakeState, query: dict[str, str]) -> Supply | None:
    return next((s for s in _visible(state, query.get("authorizedNif"))
                 if s.cups == query.get("cups")
                 and s.distributor_code == query.get("distributorCode")), None)


def _consumption(state: FakeState, query: dict[str, str]) -> Any:
    supply = _find(state, query)
    if supply is None:
        return 403, {"status": 403, "error": "Forbidden", "message": "CUPS no autorizado"}
    try:
        y1, m1 = (int(x) for x in query["startDate"].split("/"))
        y2, m2 = (int(x) for x in query["endDate"].split("/"))
        step = 900 if query.get("measurementType") == "1" else 3600
    except (KeyError, ValueError):
        return 400, {"status": 400, "error": "Bad Request"}
    rows = []
    y, m = y1, m1
    while (y, m) <= (y2, m2):
        month_rows = label_rows(y, m, step)
        if supply.distributor_code == "8" and month_rows:  # i-DE: the previous 24:00 again
            first_day = month_rows[0][0]
            start_ms = month_rows[0][2] - step * 1000
            rows.append(_row(supply, first_day, "00:00", start_ms))
        for day, label, end_ms in month_rows:
            if state.data_until_ms is not None and end_ms > state.data_until_ms:
                break
            rows.append(_row(supply, day, label, end_ms))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return rows


def _row(supply: Supply, day: str, label: str, end_ms: int) -> dict[str, Any]:
    null = is_null(end_ms)
    return {
        "cups": supply.cups, "date": day, "time": label,
        "consumptionKWh": None if null else value_kwh(supply.cups, end_ms),
        "obtainMethod": "" if null else ("Estimada" if is_estimated(end_ms) else "Real"),
        "surplusEnergyKWh": surplus_kwh(supply.cups, end_ms) if supply.surplus else None,
        "generationEnergyKWh": None,
        "selfConsumptionEnergyKWh": None,
    }


ENDPOINTS = {
    "get-supplies": _supplies, "get-supplies-v2": _supplies,
    "get-contract-detail": _contract, "get-contract-detail-v2": _contract,
    "get-consumption-data": _consumption, "get-consumption-data-v2": _consumption,
}
