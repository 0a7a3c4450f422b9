"""REST endpoints (JSON; ``Authorization: Bearer <token>``) and their OpenAPI document.

Scope rules are the websocket's (``dashboards.tokens``): a member reads its own history,
devices and alarms and its community's aggregate; an operator reads everything of its
communities. Every refusal is a JSON error and a log line. ClickHouse queries run in the
thread pool so a slow query never blocks the live feed.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from dashboards import (
    alarm_actions,
    coefficient_report,
    command_log,
    controls,
    edges,
    history,
    tokens,
)
from dashboards.deadletters import ONBOARDING_REASONS, DeadLetterBook
from dashboards.errors import RequestRefused
from dashboards.metrics import WebMetrics
from dashboards.store import Store
from ioe.messages import AlarmState, BalanceSource
from ioe.registry import Community, Device, Registry

log = logging.getLogger(__name__)

MAX_EXPORT_DAYS = 366
RECENT_ALARMS_DAYS = 7
#: the alarm kind of ``streams.anomalies.divergence`` (meter vs Datadis), named here so the
#: web side does not import the stream processors
DIVERGENCE_KIND = "divergence"
HEALTH_LOOKBACK_DAYS = 7
#: seconds of silence before a device is "late" / "offline", as multiples of its interval;
#: the distributor's meter (Datadis) publishes D+1…D+2, so it gets its own allowance.
HEALTH_RULES = {"default": (3.0, 10.0), "datadis": (72.0, 240.0)}
#: the largest JSON body the API reads (an alarm action: an action word, a name, a note)
MAX_BODY_BYTES = 4096


class ApiError(RequestRefused):
    """The API's own refusals (token, scope, bad request); the 401/403 ones are logged."""


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


@dataclass
class ApiContext:
    registry: Registry
    verifier: tokens.Verifier
    store: Store
    metrics: WebMetrics
    deadletters: DeadLetterBook = field(default_factory=DeadLetterBook)
    #: where ``ioe coefficients optimise --out DIR/ --report`` wrote its reports
    coefficient_reports: Path | None = None
    #: issues, stores and sends the web's commands (manual overrides)
    commands: controls.CommandSender | None = None
    #: the edges' roster and heartbeats
    edge_book: edges.EdgeBook | None = None


class Api:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    # -- plumbing ----------------------------------------------------------------------------
    def _principal(self, request: Request) -> tokens.Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "missing_token", "send Authorization: Bearer <token>")
        try:
            return self.ctx.verifier.verify(token.strip())
        except tokens.TokenError as exc:
            raise ApiError(401, exc.code, exc.message) from None

    def _community(self, cid: str) -> Community:
        community = self.ctx.registry.community(cid)
        if community is None:
            raise ApiError(404, "unknown_community", f"no community {cid!r}")
        return community

    async def handle(self, request: Request, name: str) -> Response:
        principal: tokens.Principal | None = None
        try:
            principal = self._principal(request)
            response = await getattr(self, name)(request, principal)
        except RequestRefused as exc:  # the API's, an alarm action's, an override's
            if isinstance(exc, ApiError) and exc.status in (401, 403):
                who = principal.describe() if principal else "unauthenticated client"
                log.warning("refused %s %s: %s (%s)", who, request.url.path, exc.code,
                            exc.message)
                self.ctx.metrics.refusals.labels("rest", exc.code).inc()
            response = json_response({"error": exc.code, "message": exc.message}, exc.status)
        self.ctx.metrics.http_requests.labels(name, str(response.status_code)).inc()
        return response

    def _check_member(self, principal: tokens.Principal, cid: str, mid: str) -> Community:
        if not tokens.member_allowed(principal, cid, mid):
            raise ApiError(403, "forbidden", "this token does not grant that member's data")
        community = self._community(cid)
        if community.member(mid) is None:
            raise ApiError(404, "unknown_member", f"no member {mid!r} in {cid!r}")
        return community

    def _check_operator(self, principal: tokens.Principal, cid: str, what: str) -> Community:
        if not tokens.operator_allowed(principal, cid):
            raise ApiError(403, "forbidden", f"{what} needs an operator token of that community")
        return self._community(cid)

    def _check_community(self, principal: tokens.Principal, cid: str) -> Community:
        if not tokens.community_allowed(principal, cid):
            raise ApiError(403, "forbidden", "this token does not grant that community")
        return self._community(cid)

    # -- endpoints ---------------------------------------------------------------------------
    async def me(self, request: Request, principal: tokens.Principal) -> Response:
        communities = []
        for cid in principal.communities:
            community = self.ctx.registry.community(cid)
            if community is None:
                continue
            entry: dict[str, Any] = {"id": cid, "name": community.name,
                                     "timezone": community.timezone}
            if principal.role == "member":
                member = community.member(principal.member_id or "")
                entry["member"] = {"id": principal.member_id,
                                   "name": member.name if member else None}
            communities.append(entry)
        return json_response({**principal.to_public(), "community_details": communities})

    async def history(self, request: Request, principal: tokens.Principal) -> Response:
        cid, mid = request.path_params["cid"], request.path_params["mid"]
        community = self._check_member(principal, cid, mid)
        kind = request.query_params.get("period", "day")
        if kind not in history.PERIODS:
            raise ApiError(400, "bad_request", f"period must be one of {history.PERIODS}")
        day = _date_param(request, "date", history.today_local(community.timezone))
        period = history.period_of(kind, day)
        start, end = period.utc_bounds(community.timezone)
        rows = await run_in_threadpool(self.ctx.store.member_hours, cid, mid, start, end)
        result = history.aggregate(rows, period, community.timezone, community.prices)
        return json_response({"community_id": cid, "member_id": mid, **result})

    async def export_csv(self, request: Request, principal: tokens.Principal) -> Response:
        cid, mid = request.path_params["cid"], request.path_params["mid"]
        community = self._check_member(principal, cid, mid)
        today = history.today_local(community.timezone)
        first = _date_param(request, "from", today.replace(day=1))
        last = _date_param(request, "to", today)
        if last < first or (last - first).days >= MAX_EXPORT_DAYS:
            raise ApiError(400, "bad_request", f"from ≤ to, at most {MAX_EXPORT_DAYS} days")
        start = history.local_midnight(first, community.timezone)
        end = history.local_midnight(last + timedelta(days=1), community.timezone)
        rows = await run_in_threadpool(self.ctx.store.member_hours, cid, mid, start, end)
        member = community.member(mid)
        body = export_text(rows, community.timezone, member.cups if member else "")
        filename = f"{cid}_{mid}_{first.isoformat()}_{last.isoformat()}.csv"
        return Response(body, media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="{filename}"'})

    async def overview(self, request: Request, principal: tokens.Principal) -> Response:
        cid = request.path_params["cid"]
        community = self._check_community(principal, cid)
        day = _date_param(request, "date", history.today_local(community.timezone))
        period = history.period_of("day", day)
        start, end = period.utc_bounds(community.timezone)
        hours = await run_in_threadpool(self.ctx.store.community_hours, cid, start, end)
        now_ms = int(time.time() * 1000)
        result: dict[str, Any] = {
            "id": community.id, "name": community.name, "timezone": community.timezone,
            "prices": dict(community.prices), "peak_power_kw": community.peak_power_kw,
            "members_total": len(community.members),
            "plants": [{"id": p.id, "name": p.name, "peak_power_kw": p.peak_power_kw}
                       for p in community.plants],
            "day": day.isoformat(), "today": history.community_totals(hours),
        }
        schedule = community.schedule_at(now_ms)
        if principal.role == "operator":
            result["members"] = [
                {"id": m.id, "name": m.name, "cups": m.cups,
                 "contracted_power_kw": m.contracted_power_kw,
                 "coefficient": community.coefficient(m.id, now_ms)} for m in community.members]
            result["schedule"] = None if schedule is None else {
                "kind": schedule.kind, "effective_from": schedule.effective_from.isoformat(),
                "year": schedule.year, "source": schedule.source,
                "sum_now": round(sum(community.coefficient(m.id, now_ms)
                                     for m in community.members), 6)}
        else:
            mid = principal.member_id or ""
            member = community.member(mid)
            result["me"] = {"id": mid, "name": member.name if member else None,
                            "coefficient": community.coefficient(mid, now_ms)}
        return json_response(result)

    async def devices(self, request: Request, principal: tokens.Principal) -> Response:
        cid = request.path_params["cid"]
        community = self._check_community(principal, cid)
        devices = [d for d in community.devices if principal.role == "operator"
                   or d.member_id == principal.member_id]
        now = time.time()
        since = int(now) - HEALTH_LOOKBACK_DAYS * 86400
        last = await run_in_threadpool(self.ctx.store.last_readings, cid, since)
        return json_response({"community_id": cid, "devices": [
            device_health(d, last.get(d.id), now) for d in devices]})

    async def alarms(self, request: Request, principal: tokens.Principal) -> Response:
        cid = request.path_params["cid"]
        self._check_community(principal, cid)
        since = int(time.time()) - RECENT_ALARMS_DAYS * 86400
        member = None if principal.role == "operator" else principal.member_id
        rows = await run_in_threadpool(self.ctx.store.alarms, cid, since, member)
        return json_response({"community_id": cid,
                              "open": [a for a in rows if a["state"] == AlarmState.OPEN],
                              "recent": [a for a in rows if a["state"] != AlarmState.OPEN]})

    async def fleet(self, request: Request, principal: tokens.Principal) -> Response:
        """Operators: every community of the token at a glance (status, today's totals, open
        alarms, live devices by health — the edges' meters and inverters; Datadis is not
        live). Live generation comes from each ``community:<cid>`` channel."""
        if principal.role != "operator":
            raise ApiError(403, "forbidden", "the fleet view needs an operator token")
        communities = [c for c in (self.ctx.registry.community(cid)
                                   for cid in principal.communities) if c is not None]
        now = time.time()
        entries = await run_in_threadpool(self._fleet_entries, communities, now)
        return json_response({"communities": entries, "generated_at_ms": int(now * 1000)})

    def _fleet_entries(self, communities: list[Community], now: float) -> list[dict[str, Any]]:
        store = self.ctx.store
        out = []
        for community in communities:
            day = history.today_local(community.timezone, now)
            start, end = history.period_of("day", day).utc_bounds(community.timezone)
            hours = store.community_hours(community.id, start, end)
            last = store.last_readings(community.id, int(now) - HEALTH_LOOKBACK_DAYS * 86400)
            # live devices only: the distributor's meter (Datadis) delivers in daily batches
            health = [device_health(d, last.get(d.id), now)["status"]
                      for d in community.devices if d.protocol.get("type") != "datadis"]
            alarms = [a for a in store.alarms(community.id, int(now) - RECENT_ALARMS_DAYS * 86400)
                      if a["state"] == AlarmState.OPEN]
            severities = {s: sum(1 for a in alarms if a["severity"] == s)
                          for s in ("info", "warning", "critical")}
            devices = {s: health.count(s) for s in ("ok", "late", "offline", "no_data")}
            out.append({
                "id": community.id, "name": community.name, "timezone": community.timezone,
                "members_total": len(community.members), "plants": len(community.plants),
                "peak_power_kw": community.peak_power_kw, "day": day.isoformat(),
                "today": history.community_totals(hours),
                "devices": {"total": len(health), **devices},
                "open_alarms": len(alarms), "open_by_severity": severities,
                "status": fleet_status(severities, devices, len(health))})
        return out

    async def reconciliation(self, request: Request, principal: tokens.Principal) -> Response:
        """Operators: per member, how much of a billing month is settled on the distributor's
        official data (Datadis supersedes the community's meters hour by hour when it
        arrives, D+1…D+30) and how much is still provisional, with the month's divergence
        alarms (meter vs Datadis beyond the tolerance, ``streams.anomalies.divergence``)."""
        cid = request.path_params["cid"]
        if not tokens.operator_allowed(principal, cid):
            raise ApiError(403, "forbidden", "reconciliation needs an operator token of that "
                                             "community")
        community = self._community(cid)
        today = history.today_local(community.timezone)
        raw = request.query_params.get("month") or today.strftime("%Y-%m")
        try:
            first = date.fromisoformat(f"{raw}-01")
        except ValueError:
            raise ApiError(400, "bad_request", "month must be YYYY-MM") from None
        period = history.period_of("month", first)
        start, end = period.utc_bounds(community.timezone)
        now = int(time.time())
        sources, divergences = await run_in_threadpool(self._reconciliation_rows, cid, start,
                                                       end)
        elapsed_h = max(0, (min(end, now) - start) // 3600) if now > start else 0
        members = []
        for member in community.members:
            rows = {src: (hours, wh, incomplete)
                    for mid, src, hours, wh, incomplete in sources if mid == member.id}
            official = rows.get(BalanceSource.DATADIS.value, (0, 0.0, 0))
            meter = rows.get(BalanceSource.METER.value, (0, 0.0, 0))
            hours = official[0] + meter[0]
            members.append({
                "member_id": member.id, "name": member.name, "cups": member.cups,
                "hours": hours, "hours_elapsed": elapsed_h,
                "official_hours": official[0], "provisional_hours": meter[0],
                "official_ratio": round(official[0] / hours, 4) if hours else None,
                "official_kwh": round(official[1] / 1000.0, 4),
                "provisional_kwh": round(meter[1] / 1000.0, 4),
                "consumption_kwh": round((official[1] + meter[1]) / 1000.0, 4),
                "incomplete_hours": official[2] + meter[2],
                "divergence_alarms": divergences.get(member.id, 0)})
        return json_response({"community_id": cid, "month": first.strftime("%Y-%m"),
                              "from": period.first.isoformat(), "to": period.end.isoformat(),
                              "members": members})

    def _reconciliation_rows(self, cid: str, start: int, end: int
                             ) -> tuple[list[tuple[str, str, int, float, int]], dict[str, int]]:
        return (self.ctx.store.member_sources(cid, start, end),
                self.ctx.store.alarm_counts(cid, DIVERGENCE_KIND, start, end))

    async def deadletters(self, request: Request, principal: tokens.Principal) -> Response:
        """Sources waiting to be onboarded (unknown or undecodable), for operators."""
        cid = request.path_params["cid"]
        if not tokens.operator_allowed(principal, cid):
            raise ApiError(403, "forbidden", "dead letters need an operator token of that "
                                             "community")
        self._community(cid)
        sources = self.ctx.deadletters.for_community(cid)
        return json_response({"community_id": cid, "reasons": list(ONBOARDING_REASONS),
                              "sources": [s.to_dict() for s in sources]})


    async def coefficient_comparison(self, request: Request,
                                     principal: tokens.Principal) -> Response:
        """Operators: the optimiser's report for the community (current vs optimised
        coefficients settled on last year's history, per member and for the community), read
        from the file ``ioe coefficients optimise --report`` wrote (dashboards.
        coefficient_report); ``available: false`` until there is one."""
        cid = request.path_params["cid"]
        community = self._check_operator(principal, cid, "the coefficient comparison")
        directory = self.ctx.coefficient_reports
        try:
            report = None if directory is None else await run_in_threadpool(
                coefficient_report.community_report, directory, community)
        except (coefficient_report.ReportError, OSError) as exc:
            log.error("coefficient report of %s: %s", cid, exc)
            # a ReportError names the file and line only; an OSError would name a server path
            why = exc if isinstance(exc, coefficient_report.ReportError) else "unreadable file"
            raise ApiError(500, "bad_report", f"the optimiser report cannot be read: {why}") \
                from None
        if report is None:
            # the server's folder is not named: a path of the server is not the browser's business
            return json_response({"community_id": cid, "available": False, "cau": community.cau})
        return json_response({"community_id": cid, **report.to_dict()})

    async def commands(self, request: Request, principal: tokens.Principal) -> Response:
        """Operators: the community's last commands with their results (control.store)."""
        cid = request.path_params["cid"]
        self._check_operator(principal, cid, "the command log")
        raw = request.query_params.get("limit") or str(command_log.DEFAULT_LIMIT)
        if not raw.isdigit() or not 1 <= int(raw) <= command_log.MAX_LIMIT:
            raise ApiError(400, "bad_request", f"limit must be 1…{command_log.MAX_LIMIT}")
        settings = self.ctx.store.settings
        entries = await run_in_threadpool(command_log.recent, settings, cid, int(raw))
        return json_response({"community_id": cid, "commands": [e.to_dict() for e in entries]})

    async def device_controls(self, request: Request, principal: tokens.Principal
                              ) -> Response:
        """The controllable devices the token may act on: what each holds now (read back),
        who asked and why, until when, the rule that last acted, a manual override in force.
        Operators: every one of the community; members: their own controllable devices."""
        cid = request.path_params["cid"]
        community = self._check_community(principal, cid)
        member = principal.member_id if principal.role == "member" else None
        devices = controls.visible_devices(community, member)
        settings = self.ctx.store.settings
        now = int(time.time() * 1000)
        entries = await run_in_threadpool(command_log.recent, settings, cid,
                                          command_log.MAX_LIMIT)
        sender = self._sender()
        holds = await run_in_threadpool(sender.holds, cid, now)
        shown = controls.device_controls(devices, entries, holds)
        own = {d.id for d in devices}
        mine = [e.to_dict() for e in entries if e.device_id in own]
        return json_response({"community_id": cid, "devices": [c.to_dict() for c in shown],
                              # a member's app shows the commands of its own devices only
                              "commands": mine[:command_log.DEFAULT_LIMIT]})

    async def override(self, request: Request, principal: tokens.Principal) -> Response:
        """Send one command from the web (POST JSON ``{"device_id", "key", "value",
        "expires_s", "reason", "confirm": true}``): checked like ``ioe control send``
        (permission, bounds, per-device rate limit), stored, sent; 202 with the command, whose
        result then shows in the log. Refusals are 403 (not the token's device) or 422."""
        from control.commands import Requester

        cid = request.path_params["cid"]
        community = self._check_community(principal, cid)
        wanted = controls.OverrideRequest.from_body(await _json_object(request))
        member = principal.member_id if principal.role == "member" else None
        if wanted.device_id not in {d.id for d in controls.visible_devices(community, member)}:
            raise ApiError(403, "forbidden", f"this token may not control {wanted.device_id}")
        if member is not None:
            requester = Requester("member", member, frozenset({cid}))
        else:
            requester = Requester("operator", principal.name or f"token-{principal.token_id}",
                                  frozenset(principal.communities))
        issued = await run_in_threadpool(self._sender().send, self.ctx.registry, requester,
                                         wanted, int(time.time() * 1000))
        command = issued.command
        log.info("web command %s by %s: %s %s=%r (%s)%s", command.command_id,
                 principal.describe(), command.device_id, command.key, command.value,
                 issued.status, f": {issued.refusal}" if issued.refusal else "")
        payload = {"command_id": command.command_id, "device_id": command.device_id,
                   "key": command.key, "value": command.value, "status": issued.status,
                   "refusal": issued.refusal, "requested_by": command.requested_by,
                   "deadline_ms": command.deadline_ms,
                   "expires_at_ms": command.issued_at_ms + wanted.expires_s * 1000}
        if issued.status != "sent":
            payload |= {"error": "refused", "message": issued.refusal}
        return json_response(payload, 202 if issued.status == "sent" else 422)

    async def edges(self, request: Request, principal: tokens.Principal) -> Response:
        """Operators: the community's edges — enrolled or not, certificate expiry — with their
        last heartbeat (version, uptime, store-and-forward depth, poll errors per device)."""
        cid = request.path_params["cid"]
        self._check_operator(principal, cid, "the edges")
        if self.ctx.edge_book is None:
            self.ctx.edge_book = edges.EdgeBook(self.ctx.store.settings)
        views = await run_in_threadpool(self.ctx.edge_book.community, cid,
                                        int(time.time() * 1000))
        return json_response({"community_id": cid, "edges": [v.to_dict() for v in views]})

    def _sender(self) -> controls.CommandSender:
        if self.ctx.commands is None:
            self.ctx.commands = controls.CommandSender(self.ctx.store.settings)
        return self.ctx.commands

    async def alarm_history(self, request: Request, principal: tokens.Principal) -> Response:
        """Operators: acknowledgements and assignments of the community's alarms of the last
        days, oldest first (the client folds them into each alarm's history)."""
        cid = request.path_params["cid"]
        self._check_operator(principal, cid, "alarm actions")
        since = int(time.time() * 1000) - alarm_actions.HISTORY_DAYS * 86_400_000
        store = alarm_actions.AlarmActionStore(self.ctx.store.settings)
        actions = await run_in_threadpool(store.history, cid, since)
        return json_response({"community_id": cid, "actions": [a.to_dict() for a in actions]})

    async def alarm_action(self, request: Request, principal: tokens.Principal) -> Response:
        """Operators: acknowledge or assign one open alarm (POST JSON ``{"action":
        "acknowledge"|"assign", "assignee": …, "note": …}``); stored, then returned."""
        cid, alarm_id = request.path_params["cid"], request.path_params["alarm_id"]
        self._check_operator(principal, cid, "acknowledging or assigning an alarm")
        wanted = alarm_actions.ActionRequest.from_body(await _json_object(request))
        alarm = await run_in_threadpool(self.ctx.store.alarm, cid, alarm_id)
        action = alarm_actions.build(principal, alarm, wanted, int(time.time() * 1000))
        store = alarm_actions.AlarmActionStore(self.ctx.store.settings)
        await run_in_threadpool(store.add, action)
        log.info("alarm %s of %s: %s by %s", alarm_id, cid, action.action, principal.describe())
        return json_response(action.to_dict(), 201)


async def _json_object(request: Request) -> dict[str, Any]:
    """The request's body: a JSON object of at most MAX_BODY_BYTES, or an ApiError."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"at most {MAX_BODY_BYTES} bytes")
    try:
        data = orjson.loads(body or b"null")
    except orjson.JSONDecodeError:
        raise ApiError(400, "bad_request", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "the body is a JSON object")
    return data


def device_health(device: Device, last: tuple[int, float | None] | None,
                  now: float) -> dict[str, Any]:
    """Health from the age of the last reading against the device's expected interval."""
    kind = "datadis" if device.protocol.get("type") == "datadis" else "default"
    late, offline = (device.expected_interval_s * f for f in HEALTH_RULES[kind])
    if last is None:
        age, status, ts_ms, power = None, "no_data", None, None
    else:
        ts_ms, power = last
        age = max(0.0, now - ts_ms / 1000.0)
        status = "ok" if age <= late else "late" if age <= offline else "offline"
    return {"device_id": device.id, "role": device.role, "member_id": device.member_id,
            "plant_id": device.plant_id, "protocol": device.protocol.get("type"),
            "expected_interval_s": device.expected_interval_s, "last_ts_ms": ts_ms,
            "last_power_w": power, "age_s": None if age is None else round(age, 1),
            "status": status}


def fleet_status(severities: dict[str, int], devices: dict[str, int], total: int) -> str:
    """``critical``: a critical alarm open, or every device silent; ``warning``: any open alarm
    or a late / offline device; else ``ok``."""
    silent = devices.get("offline", 0) + devices.get("no_data", 0)
    if severities.get("critical") or (total and silent == total):
        return "critical"
    if sum(severities.values()) or devices.get("late") or devices.get("offline"):
        return "warning"
    return "ok"


EXPORT_COLUMNS = ("interval_start_utc", "interval_start_local", "cups", "coefficient",
                  "generation_wh", "consumption_wh", "assigned_wh", "self_consumed_wh",
                  "surplus_wh", "import_wh", "source", "complete")


def export_text(rows: list[history.HourRow], tz: str, cups: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    zone = ZoneInfo(tz)
    for r in rows:
        writer.writerow([
            datetime.fromtimestamp(r.ts, ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ"),
            datetime.fromtimestamp(r.ts, zone).isoformat(), cups, f"{r.coefficient:.6f}",
            _num(r.generation_wh), _num(r.consumption_wh), _num(r.assigned_wh),
            _num(r.self_consumed_wh), _num(r.surplus_wh), _num(r.import_wh), r.source,
            int(r.complete)])
    return out.getvalue()


def _num(value: float) -> str:
    return f"{value:.3f}"


def _date_param(request: Request, name: str, default: date) -> date:
    raw = request.query_params.get(name)
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be YYYY-MM-DD") from None


# -- OpenAPI ---------------------------------------------------------------------------------
def _op(summary: str, params: list[dict[str, Any]], response: str = "application/json"
        ) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": params, "security": [{"bearer": []}],
                    "responses": {"200": {"description": "OK", "content": {response: {}}},
                                  "401": {"description": "missing, invalid, expired or "
                                                         "revoked token"},
                                  "403": {"description": "outside the token's scope"},
                                  "404": {"description": "unknown community or member"}}}}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string", **schema}}


def openapi_document() -> dict[str, Any]:
    cid, mid = _path("cid"), _path("mid")
    date_q = _query("date", "a local day in the period (YYYY-MM-DD, default today)",
                    format="date")
    public = {"security": [], "responses": {"200": {"description": "OK"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "IoE Comunidades dashboards API", "version": "1",
                 "description": "History, overview, device health and alarms of energy "
                                "communities. Live values: websocket /ws (see "
                                "dashboards/ws.py). Energies in kWh, times in UTC epoch ms or "
                                "local ISO 8601."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "bearerFormat": "JWT"}}},
        "paths": {
            "/api/me": _op("what the token grants", []),
            "/api/communities/{cid}/members/{mid}/history": _op(
                "member history by day (hourly), week, month (daily) or year (monthly), "
                "with savings in €",
                [cid, mid, _query("period", "day|week|month|year",
                                  enum=list(history.PERIODS)), date_q]),
            "/api/communities/{cid}/members/{mid}/export.csv": _op(
                "CSV of the member's hourly balances for a range of local days",
                [cid, mid, _query("from", "first local day", format="date"),
                 _query("to", "last local day (inclusive)", format="date")], "text/csv"),
            "/api/communities/{cid}/overview": _op(
                "community totals of a day, plants; for operators members, coefficients and "
                "the schedule in force", [cid, date_q]),
            "/api/communities/{cid}/devices": _op(
                "devices with health (age of the last reading vs expected interval)", [cid]),
            "/api/communities/{cid}/alarms": _op(
                f"open alarms and those of the last {RECENT_ALARMS_DAYS} days", [cid]),
            "/api/communities/{cid}/reconciliation": _op(
                "operators: per member, the hours of a month settled on Datadis vs still "
                "provisional (meters), kWh of each, and the month's divergence alarms",
                [cid, _query("month", "YYYY-MM (default this month)")]),
            "/api/fleet": _op(
                "operators: every community of the token with status, today's totals, open "
                "alarms by severity and devices by health", []),
            "/api/communities/{cid}/coefficients/comparison": _op(
                "operators: the optimiser's report, current vs optimised coefficients settled "
                "on last year's history (per member and community: kWh, €, self-consumption)",
                [cid]),
            "/api/communities/{cid}/commands": _op(
                "operators: the last commands (who asked, why, what was written, what was read "
                "back, acknowledged / failed / expired)",
                [cid, _query("limit", f"1…{command_log.MAX_LIMIT}")]),
            "/api/communities/{cid}/controls": {
                **_op("the controllable devices the token may act on: what each holds now "
                      "(read back), who asked and why, until when, the rule that last acted, "
                      "a manual override in force; and their last commands", [cid]),
                "post": {
                    "summary": "send a manual override (checked like `ioe control send`; the "
                               "rules on the point pause until it expires)",
                    "parameters": [cid], "security": [{"bearer": []}],
                    "requestBody": {"content": {"application/json": {"schema": {
                        "type": "object", "required": ["device_id", "key", "confirm"],
                        "properties": {
                            "device_id": {"type": "string"}, "key": {"type": "string"},
                            "value": {}, "reason": {"type": "string"},
                            "expires_s": {"type": "integer",
                                          "minimum": controls.MIN_EXPIRY_S,
                                          "maximum": controls.MAX_EXPIRY_S},
                            "confirm": {"type": "boolean", "enum": [True]}}}}}},
                    "responses": {"202": {"description": "sent"},
                                  "400": {"description": "no confirmation, bad body"},
                                  "403": {"description": "not the token's device"},
                                  "422": {"description": "refused: bounds, rate limit"}}}},
            "/api/communities/{cid}/edges": _op(
                "operators: the community's edges (enrolment, certificate expiry) with their "
                "last heartbeat: version, uptime, store-and-forward depth, poll errors, health",
                [cid]),
            "/api/communities/{cid}/alarm-actions": _op(
                f"operators: acknowledgements and assignments of the last "
                f"{alarm_actions.HISTORY_DAYS} days", [cid]),
            "/api/communities/{cid}/alarms/{alarm_id}/actions": {"post": {
                "summary": "operators: acknowledge or assign an open alarm",
                "parameters": [cid, _path("alarm_id")], "security": [{"bearer": []}],
                "requestBody": {"content": {"application/json": {"schema": {
                    "type": "object", "required": ["action"], "properties": {
                        "action": {"type": "string", "enum": list(alarm_actions.RULES)},
                        "assignee": {"type": "string"}, "note": {"type": "string"}}}}}},
                "responses": {"201": {"description": "stored"},
                              "400": {"description": "bad action, assignee or note"},
                              "403": {"description": "not an operator of the community"},
                              "404": {"description": "unknown alarm"},
                              "409": {"description": "the alarm is closed"}}}},
            "/api/communities/{cid}/deadletters": _op(
                "operators: unknown and undecodable sources from ioe.deadletter (origin, "
                "reason, count, last seen, a sample payload), to onboard them", [cid]),
            "/health": {"get": {"summary": "liveness and live-feed state", **public}},
            "/metrics": {"get": {"summary": "Prometheus metrics", **public}},
        },
    }
