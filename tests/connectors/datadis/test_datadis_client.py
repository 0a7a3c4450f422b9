"""The API client against the fake Datadis: login, 401, shapes, the 24 h rule, failures."""

from __future__ import annotations

import time

import pytest
from conftest import CUPS_A, CUPS_B, CUPS_C, MEMBER_NIF, NIF, PASSWORD, supplies
from fake_datadis import FakeDatadis

from connectors.datadis.client import DatadisClient, DatadisError
from connectors.datadis.ledger import DAY_S, Ledger


class Clock:
    """The ledger's clock; advanced together with the fake's to simulate the next day."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(tmp_path, clock):
    led = Ledger(tmp_path / "state", clock=clock)
    yield led
    led.close()


def make_client(fake: FakeDatadis, ledger: Ledger, **kw) -> DatadisClient:
    return DatadisClient(username=NIF, password=PASSWORD, ledger=ledger, base_url=fake.url,
                         **{"timeout_s": 5.0, **kw})


def month_query(client: DatadisClient, cups: str = CUPS_A + "0F", dist: str = "2",
                ym=(2025, 10), **kw):
    return client.consumption(cups, dist, ym, ym, measurement_type=0, point_type=5, **kw)


def test_login_bearer_headers_and_v2_shape(fake, ledger):
    client = make_client(fake, ledger)
    supplies = client.supplies().items
    assert {s["cups"] for s in supplies} >= {CUPS_A + "0F", CUPS_B}
    answer = month_query(client)
    assert len(answer.items) == 31 * 24 + 1  # October 2025 has the 25-hour day
    login, = fake.calls("/nikola-auth/tokens/login")
    assert login.method == "POST"
    data_call = fake.calls("get-consumption-data-v2")[0]
    assert data_call.headers["Authorization"].startswith("Bearer eyJ")
    assert data_call.headers["Accept"] == "application/json"
    assert data_call.headers["Accept-Encoding"] == "identity"
    assert data_call.query == {"cups": CUPS_A + "0F", "distributorCode": "2",
                               "startDate": "2025/10", "endDate": "2025/10",
                               "measurementType": "0", "pointType": "5"}


def test_v1_bare_arrays(fake, ledger):
    client = make_client(fake, ledger, api_version=1)
    assert any(s["cups"] == CUPS_B for s in client.supplies().items)
    answer = month_query(client, ym=(2025, 3))
    assert len(answer.items) == 31 * 24 - 1  # March 2025 has the 23-hour day
    assert fake.calls("get-consumption-data")[0].path.endswith("/get-consumption-data")


def test_expired_token_logs_in_again_once(fake, ledger):
    client = make_client(fake, ledger)
    month_query(client, ym=(2025, 1))
    fake.expire_tokens()
    month_query(client, ym=(2025, 2))
    assert len(fake.calls("/login")) == 2
    assert [c.status for c in fake.calls("get-consumption")] == [200, 401, 200]


def test_wrong_password_is_an_auth_error(fake, ledger):
    client = DatadisClient(username=NIF, password="wrong", ledger=ledger, base_url=fake.url)
    with pytest.raises(DatadisError) as info:
        client.supplies()
    assert info.value.kind == "auth"
    # a refused login sent no query: nothing in the ledger, the right password works at once
    assert ledger._db.execute("SELECT count(*) FROM queries").fetchone()[0] == 0
    assert make_client(fake, ledger).supplies().items
    assert fake.calls(status=429) == []


def test_same_query_is_never_sent_twice_within_24_h(fake, ledger, clock):
    client = make_client(fake, ledger)
    first = month_query(client)
    again = month_query(client)
    assert not first.cached and again.cached and again.items == first.items
    assert len(fake.calls("get-consumption")) == 1
    # a new process (new client, same state dir) remembers it too
    other = make_client(fake, Ledger(ledger.path.parent, clock=clock))
    assert month_query(other).cached
    assert len(fake.calls("get-consumption")) == 1
    # the next day it is asked again
    clock.offset += DAY_S + 1
    fake.advance(DAY_S + 1)
    assert not month_query(client).cached
    assert len(fake.calls("get-consumption")) == 2


def test_empty_answers_are_cached_too(fake, ledger):
    fake.state.data_until_ms = 0
    client = make_client(fake, ledger)
    assert month_query(client, ym=(2025, 5)).items == []
    assert month_query(client, ym=(2025, 5)).cached
    assert len(fake.calls("get-consumption")) == 1


def test_a_429_is_never_retried(fake, ledger, tmp_path, clock):
    # another tool (or a lost ledger) already asked this today: the service refuses
    other = make_client(fake, Ledger(tmp_path / "elsewhere", clock=clock))
    month_query(other)
    client = make_client(fake, ledger)
    with pytest.raises(DatadisError) as info:
        month_query(client)
    assert info.value.kind == "rate_limited"
    assert [c.status for c in fake.calls("get-consumption")] == [200, 429]
    # and it is not asked again on this day: deferred without any HTTP call
    with pytest.raises(DatadisError) as info:
        month_query(client)
    assert info.value.kind == "deferred"
    assert len(fake.calls("get-consumption")) == 2


def test_502_html_gets_one_immediate_retry(tmp_path, clock):

    with FakeDatadis(users={NIF: PASSWORD}, supplies=supplies(), count_failed=False) as fake:
        client = make_client(fake, Ledger(tmp_path / "s", clock=clock))
        fake.script("get-consumption-data-v2", "502")
        answer = month_query(client)
        assert len(answer.items) == 745
        assert [c.status for c in fake.calls("get-consumption")] == [502, 200]


def test_failures_count_so_the_retry_meets_a_429_and_the_failure_is_recorded(fake, ledger,
                                                                              clock):
    client = make_client(fake, ledger)
    fake.script("get-consumption-data-v2", "502")
    with pytest.raises(DatadisError) as info:
        month_query(client)
    assert info.value.kind == "rate_limited"
    assert [c.status for c in fake.calls("get-consumption")] == [502, 429]
    with pytest.raises(DatadisError) as info:
        month_query(client)
    assert info.value.kind == "deferred"
    assert len(fake.calls("get-consumption")) == 2  # no hammering
    clock.offset += DAY_S + 1
    fake.advance(DAY_S + 1)
    assert len(month_query(client).items) == 745  # a later run gets it


def test_html_page_inside_a_200_is_a_server_error(tmp_path, clock):

    with FakeDatadis(users={NIF: PASSWORD}, supplies=supplies(), count_failed=False) as fake:
        client = make_client(fake, Ledger(tmp_path / "s", clock=clock))
        fake.script("get-supplies-v2", "html200", "html200")
        with pytest.raises(DatadisError) as info:
            client.supplies()
        assert info.value.kind == "server"
        assert [c.status for c in fake.calls("get-supplies")] == [200, 200]  # one retry only


def test_slow_answer_times_out_and_is_retried_at_most_once(tmp_path, clock):

    with FakeDatadis(users={NIF: PASSWORD}, supplies=supplies(), count_failed=False) as fake:
        fake.state.slow_s = 1.5
        client = make_client(fake, Ledger(tmp_path / "s", clock=clock), timeout_s=0.3)
        fake.script("get-consumption-data-v2", "slow", "slow")
        with pytest.raises(DatadisError) as info:
            month_query(client)
        assert info.value.kind == "timeout"
        assert len(fake.calls("get-consumption")) == 2
        with pytest.raises(DatadisError) as info:
            month_query(client)
        assert info.value.kind == "deferred"
        assert len(fake.calls("get-consumption")) == 2


def test_distributor_error_inside_200_is_an_error(fake, ledger):
    client = make_client(fake, ledger)
    fake.script("get-consumption-data-v2", "distributor_error")
    with pytest.raises(DatadisError) as info:
        month_query(client)
    assert info.value.kind == "distributor_error"
    assert "E-DISTRIBUCI" in info.value.detail
    assert len(fake.calls("get-consumption")) == 1  # not a transient HTTP failure: no retry
    record = ledger.fresh(_key(ledger))
    assert record is not None and record.status == "failed"


def _key(ledger: Ledger) -> str:
    row = ledger._db.execute("SELECT key FROM queries WHERE key LIKE 'get-consumption%'"
                             ).fetchone()
    return row[0]


def test_authorized_nif_supplies(fake, ledger):
    client = make_client(fake, ledger)
    own = {s["cups"] for s in client.supplies().items}
    theirs = {s["cups"] for s in client.supplies(authorized_nif=MEMBER_NIF).items}
    assert CUPS_C + "0F" in theirs and CUPS_C + "0F" not in own
    answer = month_query(client, cups=CUPS_C + "0F", authorized_nif=MEMBER_NIF)
    assert len(answer.items) == 745
    assert fake.calls("get-consumption")[0].query["authorizedNif"] == MEMBER_NIF
