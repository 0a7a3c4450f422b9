"""Datadis private API client: login, Bearer token, the 24 h rule, both response shapes.

Rules (issue 5), and why:
- Login is a form POST returning a bare JWT valid 24 h; on a 401 we log in again *once*.
- Every data query goes through the :class:`~connectors.datadis.ledger.Ledger`: an identical
  query asked less than 24 h ago is answered from the cache (success, also an empty answer) or
  deferred (failure), because Datadis answers it with 429 and counts even failed calls.
- A 429 is never retried. 5xx, HTML error pages, unreadable bodies and timeouts get at most
  one immediate retry; then the failure is recorded and a later run asks again.
- v2 endpoints wrap results (``{"timeCurve": […], "distributorError": […]}``), v1 return bare
  arrays; a non-empty ``distributorError`` inside a 200 is an error — except for
  ``get-supplies-v2``, which asks *every* distributor: the supplies of those that answered are
  used, each distributor's error (typically code 2, "no puede facilitar información a ese
  NIF", from the distributors that hold no supply of the NIF) is logged and counted.
- ``Accept: application/json`` and ``Accept-Encoding: identity`` (compressed answers from some
  distributors' proxies have been seen truncated).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests

from connectors.datadis.ledger import Ledger
from connectors.datadis.metrics import DatadisMetrics
from connectors.datadis.redact import REDACTOR, get_logger

log = get_logger(__name__)

PUBLIC_BASE_URL = "https://datadis.es"
LOGIN_PATH = "/nikola-auth/tokens/login"
API = "/api-private/api/"
DEFAULT_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 15.0

#: endpoint names per API version, and the key holding the list in v2 answers
ENDPOINTS = {
    "supplies": {1: ("get-supplies", None), 2: ("get-supplies-v2", "supplies")},
    "consumption": {1: ("get-consumption-data", None),
                    2: ("get-consumption-data-v2", "timeCurve")},
}

#: endpoints asked of every distributor at once: one distributor's error is not a failure
PARTIAL_OK = frozenset({"supplies"})

#: failure kinds worth one immediate retry (transient on the Datadis side)
RETRYABLE = frozenset({"server", "timeout", "bad_response", "network"})


class DatadisError(Exception):
    """A failed Datadis call. ``kind``: rate_limited, auth, server, timeout, network,
    bad_response, distributor_error, http, deferred."""

    def __init__(self, kind: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class Answer:
    items: list[dict[str, Any]]
    asked_at: float  # when the query was sent (the cached answer's time on a cache hit)
    cached: bool
    #: ``distributorError`` entries of a partial answer (the items are still good)
    distributor_errors: tuple[dict[str, Any], ...] = ()


def query_key(endpoint: str, params: Mapping[str, Any]) -> str:
    """Canonical identity of a query: Datadis compares the full parameter set."""
    return endpoint + "?" + urlencode(sorted((k, str(v)) for k, v in params.items()
                                             if v is not None))


def describe_distributor_error(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    who = error.get("distributorName") or error.get("distributorCode") or "?"
    return f"{who}: {error.get('errorCode', '')} {error.get('errorDescription', '')}".strip()


def unwrap(body: Any, list_key: str | None, *, partial_ok: bool = False,
           ) -> tuple[list[dict[str, Any]], list[Any]]:
    """The items of a v1 (bare array) or v2 (wrapped) answer, and the ``distributorError``
    entries tolerated with ``partial_ok`` when some items came back; otherwise an error."""
    if isinstance(body, list):
        return [x for x in body if isinstance(x, dict)], []
    if not isinstance(body, dict):
        raise DatadisError("bad_response", f"unexpected JSON {type(body).__name__}")
    errors = body.get("distributorError") or []
    if not isinstance(errors, list):
        errors = [errors]
    if list_key is None:  # a v1 endpoint that answered wrapped: take the first list
        found = next((v for v in body.values() if isinstance(v, list) and v is not errors), [])
    else:
        found = body.get(list_key) or []
        if isinstance(found, dict):  # a v2 endpoint may wrap a single object
            found = [found]
    if not isinstance(found, list):
        raise DatadisError("bad_response", f"{list_key or 'items'}: expected a list, got "
                           f"{type(found).__name__}")
    items = [x for x in found if isinstance(x, dict)]
    if errors and not (partial_ok and items):
        raise DatadisError("distributor_error",
                           "; ".join(describe_distributor_error(e) for e in errors))
    return items, errors


class DatadisClient:
    def __init__(
        self,
        *,
        username: str,
        password: str,
        ledger: Ledger,
        base_url: str = PUBLIC_BASE_URL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        api_version: int = 2,
        metrics: DatadisMetrics | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if api_version not in (1, 2):
            raise ValueError("api_version must be 1 or 2")
        self.username = username
        self._password = password
        REDACTOR.add_secret(password)
        REDACTOR.add_secret(username)
        self.base_url = base_url.rstrip("/")
        self.ledger = ledger
        self.timeout_s = timeout_s
        self.api_version = api_version
        self.metrics = metrics or DatadisMetrics()
        self.session = session or requests.Session()
        self._token: str | None = None

    def close(self) -> None:
        self.session.close()

    # -- authentication -------------------------------------------------------------------
    def login(self) -> None:
        self.metrics.logins.inc()
        try:
            response = self.session.post(
                self.base_url + LOGIN_PATH,
                data={"username": self.username, "password": self._password},
                headers={"Accept": "application/json, text/plain",
                         "Accept-Encoding": "identity"},
                timeout=(CONNECT_TIMEOUT_S, self.timeout_s))
        except requests.RequestException as exc:
            raise DatadisError("network", f"login failed: {type(exc).__name__}") from None
        token = response.text.strip().strip('"')
        if response.status_code != 200 or not token or token.startswith("<") or " " in token:
            raise DatadisError("auth", f"login refused (HTTP {response.status_code})",
                               response.status_code)
        REDACTOR.add_secret(token)
        self._token = token
        log.info("logged in to Datadis as %s", self.username)

    # -- endpoints ------------------------------------------------------------------------
    def supplies(self, *, authorized_nif: str | None = None) -> Answer:
        return self._query("supplies", {"authorizedNif": authorized_nif})

    def consumption(self, cups: str, distributor_code: str, start: tuple[int, int],
                    end: tuple[int, int], *, measurement_type: int = 0,
                    point_type: int | str | None = None,
                    authorized_nif: str | None = None) -> Answer:
        return self._query("consumption", {
            "cups": cups, "distributorCode": distributor_code,
            "startDate": f"{start[0]:04d}/{start[1]:02d}",
            "endDate": f"{end[0]:04d}/{end[1]:02d}",
            "measurementType": measurement_type, "pointType": point_type,
            "authorizedNif": authorized_nif})

    # -- the ledgered call --------------------------------------------------------------
    def _query(self, name: str, params: dict[str, Any]) -> Answer:
        endpoint, list_key = ENDPOINTS[name][self.api_version]
        partial_ok = name in PARTIAL_OK
        params = {k: v for k, v in params.items() if v is not None}
        key = query_key(endpoint, params)
        previous = self.ledger.fresh(key)
        if previous is not None:
            if previous.status == "ok" and previous.body is not None:
                self.metrics.cache_hits.inc()
                log.debug("cache hit for %s", key)
                items, errors = unwrap(json.loads(previous.body), list_key,
                                       partial_ok=partial_ok)
                return Answer(items, previous.asked_at, cached=True,
                              distributor_errors=tuple(errors))
            self.metrics.deferred.inc()
            raise DatadisError("deferred", f"{key} was asked less than 24 h ago "
                                           f"({previous.status}: {previous.error}); "
                                           "asking again on a later run")
        if self._token is None:  # before the ledger: a refused login sent no query
            self.login()
        self.ledger.begin(key)
        asked_at = self.ledger.query(key).asked_at  # type: ignore[union-attr]
        for attempt in (1, 2):
            try:
                body = self._get(endpoint, params)
                items, errors = unwrap(body, list_key, partial_ok=partial_ok)
            except DatadisError as exc:
                self.metrics.requests.labels(endpoint, exc.kind).inc()
                if exc.kind in RETRYABLE and attempt == 1:
                    log.warning("Datadis %s failed (%s), retrying once", endpoint, exc)
                    self.ledger.begin(key, retry=True)
                    continue
                self.ledger.fail(key, str(exc))
                log.error("Datadis %s failed: %s (recorded; not asked again for 24 h)",
                          key, exc)
                raise
            self.metrics.requests.labels(endpoint, "partial" if errors else "ok").inc()
            for error in errors:  # logged and counted once, when the answer arrives
                code = error.get("distributorCode") if isinstance(error, dict) else None
                self.metrics.distributor_errors.labels(endpoint, str(code or "?")).inc()
                log.warning("Datadis %s: distributor error, using the other distributors' "
                            "answer: %s", endpoint, describe_distributor_error(error))
            self.ledger.succeed(key, json.dumps(body, separators=(",", ":")))
            return Answer(items, asked_at, cached=False, distributor_errors=tuple(errors))
        raise AssertionError("unreachable")

    def _get(self, endpoint: str, params: Mapping[str, Any]) -> Any:
        if self._token is None:
            self.login()
        response = self._send(endpoint, params)
        if response.status_code == 401:  # token expired (24 h) or revoked: log in again once
            log.info("Datadis token refused (401), logging in again")
            self.login()
            response = self._send(endpoint, params)
        return self._decode(response)

    def _send(self, endpoint: str, params: Mapping[str, Any]) -> requests.Response:
        try:
            return self.session.get(
                self.base_url + API + endpoint, params=dict(params),
                headers={"Authorization": f"Bearer {self._token}",
                         "Accept": "application/json", "Accept-Encoding": "identity"},
                timeout=(CONNECT_TIMEOUT_S, self.timeout_s))
        except requests.Timeout:
            raise DatadisError("timeout", f"no answer within {self.timeout_s:g} s") from None
        except requests.RequestException as exc:
            raise DatadisError("network", type(exc).__name__) from None

    @staticmethod
    def _decode(response: requests.Response) -> Any:
        status = response.status_code
        text = response.text
        if status == 429:
            raise DatadisError("rate_limited", "HTTP 429: query repeated within 24 h", status)
        if status == 401:
            raise DatadisError("auth", "HTTP 401 after a fresh login", status)
        if status >= 500:
            raise DatadisError("server", f"HTTP {status}", status)
        if status != 200:
            raise DatadisError("http", f"HTTP {status}: {text[:200]}", status)
        content_type = response.headers.get("Content-Type", "")
        if "html" in content_type or text.lstrip().startswith("<"):
            raise DatadisError("server", "HTML error page inside HTTP 200", status)
        try:
            return json.loads(text) if text.strip() else []
        except ValueError:
            raise DatadisError("bad_response", f"not JSON: {text[:80]!r}", status) from None
