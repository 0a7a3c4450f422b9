"""The labelled data set and the scoring: the scorer on hand-made alarms, then the quick
replay (2 days × 10 members) through the in-process engine against the issue's targets."""

from __future__ import annotations

from bench.anomaly_dataset import Label, plan
from bench.anomaly_eval import run, score

H = 3_600_000


def alarm(kind, subject, opened):
    return {"kind": kind, "device_id": subject, "state": "open", "version": 1,
            "opened_at_ms": opened}


def test_score_counts_duplicates_and_unexplained_alarms_as_false_positives():
    labels = [Label("offline", "d1", None, 10 * H, 11 * H),
              Label("frozen", "d2", None, 20 * H, 25 * H, also=["divergence"]),
              Label("offline", "d3", None, 30 * H, 31 * H)]
    alarms = [alarm("offline", "d1", 10 * H + 200_000),   # detected, 200 s
              alarm("offline", "d1", 10 * H + 900_000),   # same fault again: flapping -> FP
              alarm("frozen", "d2", 22 * H),              # detected, 7200 s
              alarm("divergence", "d2", 23 * H),          # a consequence: not a FP
              alarm("offline", "d9", 10 * H),             # nothing there: FP
              alarm("offline", "d3", 40 * H)]             # far too late: FP, d3 missed
    result = score(labels, alarms)
    off = result["offline"]
    assert (off["labels"], off["detected"], off["alarms"], off["true_alarms"]) == (2, 1, 4, 1)
    assert off["recall"] == 0.5 and off["precision"] == 0.25 and off["median_delay_s"] == 200
    assert result["frozen"]["median_delay_s"] == 7200 and result["frozen"]["recall"] == 1.0
    div = result["divergence"]
    assert (div["labels"], div["alarms"], div["precision"], div["recall"]) == (0, 1, 1.0, None)


def test_dataset_has_every_kind_with_known_times():
    ds = plan(members=10, days=2, seed=1, start_ms=1_777_845_600_000)
    kinds = {label.kind for label in ds.labels}
    assert kinds == {"offline", "frozen", "out_of_range", "counter_backwards", "counter_jump",
                     "night_generation", "underperformance", "inverter_fault", "divergence",
                     "coefficients_sum", "member_no_data"}
    assert all(ds.start_ms <= lb.start_ms < lb.end_ms <= ds.end_ms for lb in ds.labels)


def test_quick_replay_meets_the_targets_for_every_kind():
    out = run(quick=True)
    assert out["days"] == 2 and out["members"] == 10
    for kind, r in out["kinds"].items():
        assert r["labels"] > 0, kind
        assert r["recall"] >= 0.95, (kind, r)
        assert r["precision"] >= 0.95, (kind, r)
        assert r["delay_ok"], (kind, r)
