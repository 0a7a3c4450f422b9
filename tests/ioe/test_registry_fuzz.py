"""The registry file parser, fuzzed (issue 16, item 14): any document is a registry or a
:class:`RegistryError` naming the file and line — never another exception (``ioe registry
validate|apply``, the bridge and the web server catch only :class:`RegistryError`). A registry
that parses also survives its own wire form (``Community.to_json`` → ``from_json``), which is
what every process reads from ``ioe.registry``.

Real-world starting point: the project's example community ``infra/examples/community.yaml``
(30 members with real-format CUPS, two inverters, Shelly/Tasmota/Modbus devices, the official
coefficient file beside it), mutated one value, key or list item at a time. Bounded by default;
``pytest -m long`` parses ≥ 1,000,000 mutated documents.

The fuzz found five classes of input that ``ioe/registry.py`` did not refuse cleanly (a list
item that is not a mapping, prices that are not numbers, protocol values that are not finite,
integers beyond 64 bits, a missing coefficient file); they are fixed, and each keeps one
deterministic case below. :data:`KNOWN` is where a newly found class goes (pattern → name, with
a strict ``xfail`` case) so the fuzz can go on looking for *other* classes until it is fixed;
it is empty: every exception other than :class:`RegistryError` fails the fuzz.
"""

from __future__ import annotations

import math
import os
import random
import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ioe.registry import Community, Registry, RegistryError, parse_registry
from ioe.settings import ROOT

EXAMPLE = ROOT / "infra/examples/community.yaml"
DOCUMENT = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
#: values a hand-edited YAML file produces: wrong types, empties, out-of-range numbers…
JUNK: list[Any] = [None, "", " ", 0, -1, 1.5, 1e309, -1e309, float("nan"), 2**70, True, [], {},
                   [None], {"id": None}, "x", "m01", "plant-1", "ES0021380404050463BV",
                   "ES0021380404050463BX", "Europe/Nowhere", "2.0TD", "generation", "mqtt",
                   "modbus", "shelly-gen2", "2026-13-01", "2026-01-01", "\n", "a" * 300]


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and list indexes) into the document."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


PATHS = paths(DOCUMENT)[1:]


def mutate(document: Any, path: tuple[Any, ...], action: str, junk: Any) -> Any:
    """A copy of ``document`` with one change at ``path`` (copied along the path only)."""
    if len(path) == 1:
        copy: Any = dict(document) if isinstance(document, dict) else list(document)
        key = path[0]
        if action == "replace":
            copy[key] = junk
        elif action == "delete":
            del copy[key]
        elif isinstance(copy, list):  # duplicate a list item: duplicate ids, twice the device
            copy.insert(key, copy[key])
        else:
            copy[f"{key}_x"] = copy[key]  # an unknown key beside a known one
        return copy
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[path[0]] = mutate(document[path[0]], path[1:], action, junk)
    return copy


#: (exception type, message pattern) → a known, unfixed bug of ioe/registry.py (none today)
KNOWN: dict[tuple[type[BaseException], str], str] = {}


def _known(exc: BaseException) -> str | None:
    return next((bug for (kind, pattern), bug in KNOWN.items()
                 if isinstance(exc, kind) and re.search(pattern, str(exc))), None)


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def check(document: Any) -> str:
    """The invariant; returns the outcome (``registry``, ``refused`` or a known bug)."""
    try:
        registry = parse_registry(document, source="fuzz.yaml", base_dir=EXAMPLE.parent)
        assert isinstance(registry, Registry)
        for community in registry.communities.values():
            if not all(_finite(d.protocol) for d in community.devices):
                raise AssertionError("protocol not finite")
            if not _finite(community.prices):
                raise AssertionError("prices not finite")
            again = Community.from_json(community.to_json())
            assert again.to_dict() == community.to_dict()
            assert all(m.cups for m in community.members)
            assert math.isfinite(community.peak_power_kw)
    except RegistryError as exc:
        assert str(exc).startswith("fuzz.yaml"), exc
        return "refused"
    except (TypeError, AttributeError, ValueError, OSError, AssertionError) as exc:
        bug = _known(exc)
        if bug is None:
            raise
        return f"known: {bug}"
    return "registry"


def test_the_example_parses():
    """The fuzz's starting point is a good registry (so the fuzz can fail)."""
    assert check(DOCUMENT) == "registry"
    members = DOCUMENT["communities"][0]["members"]
    assert check(mutate(DOCUMENT, ("communities", 0, "members", 1, "id"), "replace",
                        members[0]["id"])) == "refused"  # two members m01


# -- the bug classes the fuzz found (fixed), one deterministic case each -----------------------
def _replaced(path: tuple[Any, ...], value: Any) -> Any:
    return mutate(DOCUMENT, path, "replace", value)


KNOWN_CASES = [
    # a `-` with nothing after it in YAML: a None where a member mapping should be
    pytest.param(_replaced(("communities", 0, "members", 3), None), id="member_is_null"),
    pytest.param(_replaced(("communities", 0, "coefficients", 0), "file.txt"),
                 id="coefficients_item_is_a_string"),
    pytest.param(_replaced(("communities", 0, "prices", "energy_eur_kwh"), "0,145"),
                 id="price_with_a_decimal_comma"),
    pytest.param(_replaced(("communities", 0, "prices", "energy_eur_kwh"), float("inf")),
                 id="price_not_finite"),
    pytest.param(_replaced(("communities", 0, "prices", "surplus_eur_kwh"), -0.06),
                 id="price_negative"),
    # orjson raises "Integer exceeds 64-bit range" at `ioe registry apply`
    pytest.param(_replaced(("communities", 0, "devices", 0, "protocol", "port"), 2**70),
                 id="protocol_integer_beyond_64_bits"),
    pytest.param(_replaced(("communities", 0, "devices", 0, "protocol", "extra"), 2**70),
                 id="protocol_free_option_beyond_64_bits"),
    # .inf would become null on ioe.registry (orjson)
    pytest.param(_replaced(("communities", 0, "devices", 5, "protocol", "decoder"),
                           float("inf")), id="protocol_value_not_finite"),
    pytest.param(_replaced(("communities", 0, "devices", 5, "protocol", "fields"),
                           {"power": float("nan")}), id="protocol_nested_value_not_finite"),
    pytest.param(_replaced(("communities", 0, "coefficients", 0, "file"), "missing.txt"),
                 id="coefficient_file_missing"),
]


@pytest.mark.parametrize("document", KNOWN_CASES)
def test_known_bug_is_a_registry_error(document):
    """Each is refused with a RegistryError naming the file (``check`` asserts the prefix);
    before the fix each escaped as another exception."""
    assert check(document) == "refused"


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(["replace", "delete", "add"]),
                          st.sampled_from(JUNK)), min_size=1, max_size=3))
def test_fuzz_the_example(edits):
    document: Any = DOCUMENT
    for path, action, junk in edits:
        try:
            document = mutate(document, path, action, junk)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced what this path points into
    check(document)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.recursive(st.sampled_from(JUNK), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["communities", "id", "members", "plants",
                                                       "devices", "cups", "role", "protocol",
                                                       "coefficients", "timezone", "member",
                                                       "plant", "type", "file", "kind"]),
                                      inner, max_size=5), max_leaves=25))
def test_fuzz_any_document(document):
    check(document)


@pytest.mark.long
@pytest.mark.timeout(3600)  # a million inputs on a shared machine
def test_long_fuzz_a_million_registries():
    count = int(os.environ.get("IOE_FUZZ_INPUTS", "1000000"))
    rng = random.Random(20261204)
    outcomes: dict[str, int] = {}
    for _ in range(count):
        document: Any = DOCUMENT
        for _ in range(rng.randint(1, 3)):
            try:
                document = mutate(document, rng.choice(PATHS),
                                  rng.choice(["replace", "replace", "delete", "add"]),
                                  rng.choice(JUNK))
            except (KeyError, IndexError, TypeError):
                continue
        outcome = check(document)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    known = sum(n for outcome, n in outcomes.items() if outcome.startswith("known"))
    print(f"registry fuzz: {count} documents, 0 unexpected exceptions, {known} inputs hit the "
          f"known registry.py bugs (KNOWN), {outcomes}")
