"""The control centre's coefficient comparison: the optimiser's report, current vs optimised.

The report is written by the real optimiser (``ioe coefficients optimise --report``) on a
hand-built history whose answer is known by hand (the case of tests/streams/test_optimise_cli):
every day of 2025 the plant makes 1 kWh in each local hour starting 10…15 (6 kWh a day); Ana
(m1) draws 1 kWh in the hours starting 10, 11, 12, Josep (m2) in 13, 14, 15; the file in force
is 0.7 / 0.3. For the 365 days of 2026, by hand (€ saved = 0.15·SC + Σ_month min(0.05·S, 0.15·I),
and both S and I are the same every day, so the monthly minimum is the daily one × 365):

* current (static): Ana is assigned 4.2 kWh a day and self-consumes 0.7 in each of her 3 hours,
  2.1 (50 % of her share; 70 % of her 3 kWh), S 2.1, I 0.9: 0.15·766.5 + 0.05·766.5 = 153.30 €;
  Josep is assigned 1.8, self-consumes 0.9 (50 %; 30 % of his consumption), S 0.9, I 2.1:
  0.15·328.5 + 0.05·328.5 = 65.70 €. The community: 3 of 6 kWh a day (50 %), 219.00 €;
* optimised (hourly, annual shares kept): Ana keeps 0.7·2190 = 1533 kWh a year and can use at
  most 1095 of it (71.4 %, her whole consumption; S 438, I 0): 164.25 €; Josep uses all his
  657 kWh (100 %; I 438, S 0): 98.55 €. The community: 1752 of 2190 kWh (80 %), 262.80 €.

Per hour of the day (the optimised file beside the report, averaged over the year): Ana must
have the whole plant in her hours 10…12 (β 1, Josep 0), and Josep's 657 kWh can only be in his
hours 13…15, so his mean β over those three hours is 657 / (3·365) = 0.6 (Ana's 0.4); in every
hour the two add up to 1. The annual shares under the file in force: 0.7 and 0.3.

Then: the REST figures and the page's table and chart carry those numbers; a member token and
an operator of another community get 403; a community without a report says so.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from browser_helpers import DESKTOP, axe_violations, open_page, see, shoot
from dash_helpers import CID, CUPS, OTHER, PLANT_CUPS, REGISTRY_YAML, LiveServer, wait_for
from playwright.sync_api import Browser, expect

from dashboards import tokens
from ioe.cli import main
from ioe.registry import load_registry
from ioe.settings import Settings

pytestmark = [pytest.mark.stack, pytest.mark.browser]

TZ = ZoneInfo("Europe/Madrid")
CAU = PLANT_CUPS + "A001"
A, B = CUPS["m1"], CUPS["m2"]
DAYS = 365  # of the target year 2026


def wall_hours(year: int) -> list[datetime]:
    """The local start of every hour of a local year (both clock changes), from UTC hours."""
    start = datetime(year, 1, 1, tzinfo=TZ).astimezone(UTC)
    end = datetime(year + 1, 1, 1, tzinfo=TZ).astimezone(UTC)
    hours = int((end - start).total_seconds() // 3600)
    return [datetime.fromtimestamp(start.timestamp() + 3600 * k, UTC).astimezone(TZ)
            for k in range(hours)]


def datadis_csv(path: Path, column: str, profiles: dict[str, Callable[[int], float]]) -> Path:
    """Datadis-style rows ``cups;date;time;kwh``: time is the local hour's end (01:00…24:00)."""
    lines = [f"cups;date;time;{column}"]
    for cups, profile in profiles.items():
        for local in wall_hours(2025):
            lines.append(f"{cups};{local:%Y/%m/%d};{local.hour + 1:02d}:00;"
                         f"{profile(local.hour):.3f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The optimiser's output directory: ``<CAU>_2026.txt`` and its ``.report.csv``."""
    tmp = tmp_path_factory.mktemp("optimise")
    consumption = datadis_csv(tmp / "consumption.csv", "consumption_kwh", {
        A: lambda h: 1.0 if 10 <= h < 13 else 0.0, B: lambda h: 1.0 if 13 <= h < 16 else 0.0})
    generation = datadis_csv(tmp / "generation.csv", "generation_kwh",
                             {PLANT_CUPS: lambda h: 1.0 if 10 <= h < 16 else 0.0})
    current = tmp / f"{CAU}_2026.txt"
    current.write_text(f"{A};0,700000\n{B};0,300000\n", encoding="utf-8")
    out = tmp / "reports"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = main(["coefficients", "optimise", "--consumption", str(consumption),
                     "--generation", str(generation), "--current", str(current),
                     "--year", "2026", "--out", f"{out}/", "--report",
                     "--price-energy", "0.15", "--price-surplus", "0.05"])
    assert code == 0, printed.getvalue()
    assert (out / f"{CAU}_2026.txt.report.csv").is_file()
    return out


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    """The dashboards' test registry with the community's CAU (the report is found by it)."""
    path = tmp_path / "community.yaml"
    path.write_text(REGISTRY_YAML.replace("    name: Comunidad de Prueba\n",
                                          f"    name: Comunidad de Prueba\n    cau: {CAU}\n", 1),
                    encoding="utf-8")
    assert load_registry(path).community(CID).cau == CAU  # type: ignore[union-attr]
    return path


@pytest.fixture
def server(stack_settings: Settings, server_factory: Callable[..., LiveServer],
           reports: Path) -> LiveServer:
    return server_factory(stack_settings, coefficient_reports=reports)


def get(server: LiveServer, token: str, path: str) -> httpx.Response:
    return httpx.get(server.url + path, headers={"authorization": f"Bearer {token}"}, timeout=30)


def operator(server: LiveServer, *communities: str) -> str:
    return tokens.issue(server.settings, role="operator", communities=list(communities))[0]


COMPARISON = f"/api/communities/{CID}/coefficients/comparison"


def test_comparison_rest_matches_the_hand_computation(server: LiveServer) -> None:
    response = get(server, operator(server, CID), COMPARISON)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["available"] is True and body["year"] == 2026
    assert body["file"] == f"{CAU}_2026.txt.report.csv"
    members = {m["member_id"]: m for m in body["members"]}
    assert set(members) == {"m1", "m2"}  # m3 has no row in the file the optimiser was given
    by_hand = {  # member: (scenario, assigned, SC, S, I, SC/assigned, SC/C, €)
        "m1": (("current", 4.2 * DAYS, 2.1 * DAYS, 2.1 * DAYS, 0.9 * DAYS, 0.5, 0.7, 153.30),
               ("optimised", 1533, 1095, 438, 0, 1095 / 1533, 1.0, 164.25)),
        "m2": (("current", 1.8 * DAYS, 0.9 * DAYS, 0.9 * DAYS, 2.1 * DAYS, 0.5, 0.3, 65.70),
               ("optimised", 657, 657, 0, 438, 1.0, 657 / 1095, 98.55)),
    }
    for mid, scenarios in by_hand.items():
        for scenario, assigned, sc, surplus, imported, ratio, coverage, eur in scenarios:
            got = members[mid][scenario]
            assert got["consumption_kwh"] == pytest.approx(3 * DAYS, abs=1e-6)
            assert got["assigned_kwh"] == pytest.approx(assigned, rel=1e-3), (mid, scenario)
            assert got["self_consumed_kwh"] == pytest.approx(sc, abs=0.01), (mid, scenario)
            assert got["surplus_kwh"] == pytest.approx(surplus, abs=2), (mid, scenario)
            assert got["grid_import_kwh"] == pytest.approx(imported, abs=0.01), (mid, scenario)
            assert got["self_consumption_ratio"] == pytest.approx(ratio, abs=1e-3)
            assert got["coverage_ratio"] == pytest.approx(coverage, abs=1e-4)
            assert got["savings_eur"] == pytest.approx(eur, abs=0.01), (mid, scenario)
    assert members["m1"]["gain_savings_eur"] == pytest.approx(164.25 - 153.30, abs=0.01)
    profiles = {p["member_id"]: p for p in body["hour_profiles"]}
    assert body["coefficients_file"] == f"{CAU}_2026.txt"
    assert profiles["m1"]["current_share"] == pytest.approx(0.7, abs=1e-6)
    assert profiles["m2"]["current_share"] == pytest.approx(0.3, abs=1e-6)
    ana, josep = profiles["m1"]["optimised"], profiles["m2"]["optimised"]
    assert len(ana) == len(josep) == 24
    for hour in (10, 11, 12):
        assert ana[hour] == pytest.approx(1.0, abs=1e-5) and josep[hour] == pytest.approx(
            0.0, abs=1e-5)
    assert sum(josep[13:16]) / 3 == pytest.approx(0.6, abs=1e-4)
    assert sum(ana[13:16]) / 3 == pytest.approx(0.4, abs=1e-4)
    assert [a + j for a, j in zip(ana, josep, strict=True)] == pytest.approx([1.0] * 24,
                                                                              abs=1e-6)
    community = body["community"]
    assert community["current"]["self_consumed_kwh"] == pytest.approx(3 * DAYS, abs=1e-6)
    assert community["optimised"]["self_consumed_kwh"] == pytest.approx(1752, abs=0.02)
    assert community["current"]["self_consumption_ratio"] == pytest.approx(0.5, abs=1e-6)
    assert community["optimised"]["self_consumption_ratio"] == pytest.approx(0.8, abs=1e-5)
    assert community["gain_self_consumed_kwh"] == pytest.approx(1752 - 3 * DAYS, abs=0.02)
    assert community["gain_savings_eur"] == pytest.approx(262.80 - 219.00, abs=0.02)


def test_comparison_is_for_operators_of_the_community(server: LiveServer) -> None:
    assert get(server, server.token(), COMPARISON).status_code == 403  # member of ce-test
    assert get(server, operator(server, OTHER), COMPARISON).status_code == 403
    assert get(server, "not-a-token", COMPARISON).status_code == 401
    # the other community has no CAU, hence no report: said so, not an error
    other = get(server, operator(server, OTHER), f"/api/communities/{OTHER}/coefficients/"
                                                 "comparison")
    assert other.status_code == 200 and other.json()["available"] is False


def test_control_centre_shows_the_comparison(server: LiveServer, browser: Browser) -> None:
    errors: list[str] = []
    page = open_page(browser, server, "/control", operator(server, CID, OTHER), errors=errors,
                     device=DESKTOP)
    row = "#coef-table tr[data-member={}] [data-field={}]"
    shown = {  # es-ES, by hand from the module docstring
        "m1": ("50,0 %", "71,4 %", "153,30 €", "164,25 €", "+10,95 €"),
        "m2": ("50,0 %", "100,0 %", "65,70 €", "98,55 €", "+32,85 €"),
        "community": ("50,0 %", "80,0 %", "219,00 €", "262,80 €", "+43,80 €"),
    }
    for mid, values in shown.items():
        for field, value in zip(("ratio-current", "ratio-optimised", "savings-current",
                                 "savings-optimised", "gain"), values, strict=True):
            see(page, row.format(mid, field), value)
    expect(page.locator("#coef-summary")).to_contain_text("del 50,0 % al 80,0 %")
    expect(page.locator("#coef-summary")).to_contain_text("+657 kWh")
    # the chart: one pair of bars per member, current then optimised, in the metric shown
    data = page.evaluate("window.ioeCharts['coef-chart'].data")
    assert data[1] == pytest.approx([0.5, 0.5], abs=1e-6)
    assert data[2] == pytest.approx([1095 / 1533, 1.0], abs=1e-3)
    page.click("#coef-metric button[data-metric=savings]")
    expect(page.locator("#coef-metric button[data-metric=savings]")).to_have_attribute(
        "aria-pressed", "true")
    data = page.evaluate("window.ioeCharts['coef-chart'].data")
    assert data[1] == pytest.approx([153.30, 65.70], abs=0.01)
    assert data[2] == pytest.approx([164.25, 98.55], abs=0.01)
    ticks = page.evaluate("window.ioeCharts['coef-chart'].axes.map(a => (a._values || []))")
    assert ticks[0] == ["Ana García", "Josep Martí"] and ticks[1]
    # per hour of the day, Josep: nothing in Ana's hours, 0.6 on average in his own
    page.select_option("#coef-member", "m2")
    wait_for(lambda: page.evaluate("window.ioeCharts['coef-hours'].data[1][0]") == 0.3,
             what="Josep's hours")
    hours = page.evaluate("window.ioeCharts['coef-hours'].data")
    assert hours[0] == list(range(24))
    assert hours[2][10:13] == pytest.approx([0.0] * 3, abs=1e-5)
    assert sum(hours[2][13:16]) / 3 == pytest.approx(0.6, abs=1e-4)
    violations = axe_violations(page)
    assert violations == [], violations
    shoot(page, "dashboard-control-coefficients.png")
    # the other community: no report yet, and the page says how to make one
    page.goto(f"{server.url}/control?community={OTHER}")
    expect(page.locator("#coef-none")).to_contain_text("ioe coefficients optimise")
    expect(page.locator("#coef-body")).to_be_hidden()
    assert errors == []


def test_a_report_that_is_not_the_optimisers_is_refused_with_its_line() -> None:
    from streams.energy.report import ReportError
    from streams.energy.report import parse_report as parse

    header = ("scenario;cups;consumption_kwh;assigned_kwh;self_consumed_kwh;surplus_kwh;"
              "grid_import_kwh;energy_term_eur;savings_eur")
    with pytest.raises(ReportError, match="no savings_eur"):
        parse(header.rsplit(";", 1)[0] + "\n", "r.csv")
    with pytest.raises(ReportError, match=r"r.csv:3: a figure is not a number"):
        parse(f"{header}\ncurrent;{A};1;1;1;0;0;0;0\ncurrent;{B};1;x;1;0;0;0;0\n", "r.csv")
    with pytest.raises(ReportError, match=r"r.csv:2: unknown scenario 'future'"):
        parse(f"{header}\nfuture;{A};1;1;1;0;0;0;0\n", "r.csv")
