"""Security headers of ``ioe web`` (issue 18, the web side), against a real uvicorn server.

- Every HTTP response (pages, static files, API answers and refusals, health, 404) carries the
  Content-Security-Policy, ``frame-ancestors 'none'`` + ``X-Frame-Options: DENY``, ``nosniff``
  and ``Referrer-Policy: no-referrer``.
- ``Strict-Transport-Security`` only over TLS: served directly over https, or behind a proxy
  that says ``X-Forwarded-Proto: https`` *and* is a configured trusted proxy; the same header
  from anyone else is ignored.
- The pages have no inline script, style or event handler (the CSP would block them), and in
  Chromium the member page and the control centre render with the CSP on and no violation.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dash_helpers import wait_for, with_web
from playwright.sync_api import Browser, ConsoleMessage
from security_helpers import WebServer, self_signed

from dashboards.app import STATIC_DIR
from dashboards.security import CSP
from ioe.settings import Settings

EXPECTED = {"content-security-policy": CSP, "x-frame-options": "DENY",
            "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}
PATHS = ["/", "/member", "/tablet", "/control", "/static/common.js", "/static/style.css",
         "/sw.js", "/manifest.webmanifest", "/health", "/openapi.json", "/metrics",
         "/api/me", "/api/communities/ce-test/overview", "/no-such-page"]


@pytest.fixture
def web_factory(web_settings: Settings) -> Iterator[Callable[..., WebServer]]:
    servers: list[WebServer] = []

    def start(**options: Any) -> WebServer:
        server = WebServer(web_settings, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_the_policy_allows_only_the_servers_own_files() -> None:
    directives = dict(d.split(" ", 1) for d in CSP.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"  # the websocket is same-origin
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "unsafe" not in CSP and "*" not in CSP


def test_every_response_carries_the_headers_and_no_hsts_over_http(
        web_factory: Callable[..., WebServer]) -> None:
    server = web_factory()
    with httpx.Client(base_url=server.url) as http:
        for path in PATHS:
            response = http.get(path, headers={"accept-encoding": "gzip"})
            for name, value in EXPECTED.items():
                assert response.headers.get(name) == value, (path, name)
            assert "strict-transport-security" not in response.headers, path
        assert http.get("/api/me").status_code == 401
        assert http.get("/no-such-page").status_code == 404
        # a forwarded https from a peer that is not a configured proxy is not believed
        forged = http.get("/member", headers={"x-forwarded-proto": "https"})
        assert "strict-transport-security" not in forged.headers


def test_hsts_behind_a_trusted_proxy_only(web_factory: Callable[..., WebServer]) -> None:
    trusted = web_factory(trusted_proxies=["127.0.0.1"])
    other = web_factory(trusted_proxies=["10.0.0.1"])
    with httpx.Client() as http:
        over_tls = http.get(trusted.url + "/member", headers={"x-forwarded-proto": "https"})
        assert over_tls.headers["strict-transport-security"] == "max-age=31536000"
        assert over_tls.headers["content-security-policy"] == CSP
        plain = http.get(trusted.url + "/member", headers={"x-forwarded-proto": "http"})
        assert "strict-transport-security" not in plain.headers
        untrusted = http.get(other.url + "/member", headers={"x-forwarded-proto": "https"})
        assert "strict-transport-security" not in untrusted.headers


def test_hsts_when_served_over_tls_directly(web_factory: Callable[..., WebServer],
                                            tmp_path: Path) -> None:
    certfile, keyfile = self_signed(tmp_path)
    server = web_factory(tls=(certfile, keyfile))
    context = ssl.create_default_context(cafile=str(certfile))
    with httpx.Client(verify=context) as http:
        response = http.get(server.url + "/control")
        assert response.status_code == 200
        assert response.headers["strict-transport-security"] == "max-age=31536000"
        assert response.headers["x-frame-options"] == "DENY"


def test_pages_have_no_inline_script_style_or_handler() -> None:
    """What the CSP would block: ``<script>`` without ``src``, ``<style>``, ``style=``,
    ``on…=`` attributes, ``javascript:`` URLs — in the pages and in what the scripts build."""
    for page in sorted(STATIC_DIR.glob("*.html")):
        html = page.read_text(encoding="utf-8")
        for script in re.findall(r"<script\b([^>]*)>", html, re.I):
            assert "src=" in script, (page.name, script)
        assert not re.search(r"<style\b|\sstyle\s*=|\son[a-z]+\s*=|javascript:", html, re.I), \
            page.name
    for script in sorted(STATIC_DIR.glob("*.js")):
        code = script.read_text(encoding="utf-8")
        assert not re.search(r"innerHTML|insertAdjacentHTML|setAttribute\(\s*[\"']style|"
                             r"\beval\(|new Function\(|cssText", code), script.name


# -- the pages in Chromium with the CSP on ------------------------------------------------------
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(
    `${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""


@pytest.mark.browser
@pytest.mark.parametrize("path,role", [("/member", "member"), ("/control", "operator")])
def test_member_page_and_control_centre_render_with_the_csp(
        path: str, role: str, tmp_path: Path, registry_file: Path, browser: Browser) -> None:
    """Real pages, real server (``ioe web``'s headers), no violation reported by the page or
    the console; the websocket (``connect-src 'self'``) goes live."""
    server = WebServer(with_web(Settings(), tmp_path, registry_file)).start()
    try:
        context = browser.new_context(locale="es-ES", timezone_id="Europe/Madrid")
        context.add_init_script(CSP_LISTENER)
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
        responses: list[Any] = []
        page.on("response", lambda r: responses.append(r) if r.url.endswith(path) else None)
        token = server.token(role=role, member="m1" if role == "member" else None)
        page.goto(f"{server.url}{path}#token={token}")
        assert responses and responses[0].headers["content-security-policy"] == CSP
        page.wait_for_load_state("networkidle")
        wait_for(lambda: page.evaluate(
            "document.querySelector('#conn-state')?.dataset.state") == "live",
            timeout=20, what="the websocket to go live")
        # scripts ran: the page filled in who the token is for
        name_selector = "#member-name" if role == "member" else "#community-name"
        wait_for(lambda: page.locator(name_selector).inner_text().strip(), timeout=20,
                 what="the page to render its data")
        violations = page.evaluate("window.__cspViolations")
        assert violations == []
        assert not [line for line in console
                    if "Content Security Policy" in line or line.startswith("pageerror")], \
            console
        assert page.evaluate("document.styleSheets.length") >= 1  # style.css applied
        context.close()
    finally:
        server.stop()


@pytest.mark.browser
def test_the_listener_sees_a_violation(tmp_path: Path, registry_file: Path,
                                       browser: Browser) -> None:
    """The check above can fail: an inline script on a served page is reported."""
    server = WebServer(with_web(Settings(), tmp_path, registry_file)).start()
    try:
        context = browser.new_context()
        context.add_init_script(CSP_LISTENER)
        page = context.new_page()
        messages: list[ConsoleMessage] = []
        page.on("console", lambda m: messages.append(m))
        page.goto(server.url + "/")
        page.evaluate("""() => { const s = document.createElement('script');
            s.textContent = 'window.__ran = 1'; document.body.append(s); }""")
        wait_for(lambda: page.evaluate("window.__cspViolations.length"), timeout=10,
                 what="the violation event")
        assert page.evaluate("window.__ran") is None
        assert any("Content Security Policy" in m.text for m in messages)
        context.close()
    finally:
        server.stop()


