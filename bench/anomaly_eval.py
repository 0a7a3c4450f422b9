"""Precision, recall and detection delay of the anomaly detectors on the labelled data set.

The scoring core (:func:`score`) is a function over alarm events, so it judges alarms from any
source:

* in-process (default): the data set is replayed through :class:`AnomalyEngine` with simulated
  minute ticks — fast, deterministic, what ``run(quick=True)`` and the tests use;
* ``--via-kafka``: the data set is produced to ``ioe.readings`` (the registry to
  ``ioe.registry``) and the alarms are read back from ``ioe.anomalies``, i.e. through the real
  pipeline. It needs a worker running with the same topic prefix and event-time ticks, e.g.::

      export IOE_TOPIC_PREFIX=bench1.
      .venv/bin/ioe schema                      # topics (+ ClickHouse tables)
      .venv/bin/ioe worker &                    # the Faust worker running streams.anomalies.agent
      .venv/bin/python -m bench.anomaly_eval --via-kafka --days 2 --members 10

Matching: an alarm "open" event matches a label when subject and kind agree (or the kind is in
the label's ``also``: a consequence of that fault, not counted against precision) and it opened
between the fault's start and its end plus a grace of 2 × the detector's window (≥ 15 min).
Each label absorbs at most one alarm per kind: a second alarm for the same fault (flapping) is a
false positive. Delay = first matching open − fault start.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bench.anomaly_dataset import COMMUNITY_ID, Dataset, Label, default_start_ms, plan
from streams.anomalies.config import AnomalyConfig
from streams.anomalies.engine import ALL_KINDS, AnomalyEngine

STEP_S = 60.0
MIN_GRACE_S = 900.0


def windows(config: AnomalyConfig, interval_s: float = STEP_S) -> dict[str, float]:
    """The detection window of each detector in seconds: the time its condition must hold
    (or the data it needs) before it may open. Target: median delay ≤ 2 × window."""
    def held(h: Any, extra: float = 0.0) -> float:
        return max(h.open_n * interval_s, h.open_s, interval_s) + extra

    return {
        "offline": config.offline.window_s(interval_s),
        "frozen": config.frozen.window_s("consumption"),
        "frozen:generation": config.frozen.window_s("generation"),
        "out_of_range": held(config.out_of_range.hysteresis),
        "counter_backwards": held(config.counter.hysteresis),
        "counter_jump": held(config.counter.hysteresis),
        "night_generation": held(config.night.hysteresis),
        "underperformance": held(config.underperformance.hysteresis),
        "inverter_fault": held(config.inverter_status.hysteresis),
        "divergence": config.divergence.hysteresis.open_n * 3600.0,
        "coefficients_sum": interval_s,
        "member_no_data": config.registry.member_silence_s,
    }


def label_window(label: Label, win: dict[str, float]) -> float:
    if label.kind == "frozen" and label.subject.startswith("inv-"):
        return win["frozen:generation"]
    return win[label.kind]


@dataclass
class KindScore:
    labels: int = 0
    detected: int = 0
    alarms: int = 0
    true_alarms: int = 0
    #: true alarms explained by another kind's fault (a label's ``also``)
    consequential: int = 0
    delays: list[float] | None = None

    def as_dict(self, window_s: float) -> dict[str, Any]:
        delays = self.delays or []
        median = statistics.median(delays) if delays else None
        return {
            "labels": self.labels, "detected": self.detected, "alarms": self.alarms,
            "true_alarms": self.true_alarms, "consequential": self.consequential,
            "recall": self.detected / self.labels if self.labels else None,
            "precision": self.true_alarms / self.alarms if self.alarms else None,
            "median_delay_s": median, "window_s": window_s,
            "delay_ok": median is not None and median <= 2 * window_s,
        }


def score(labels: Iterable[Label], alarms: Iterable[dict[str, Any]],
          config: AnomalyConfig | None = None) -> dict[str, dict[str, Any]]:
    """Per kind: labels, detected, alarms, precision, recall, median delay (seconds)."""
    win = windows(config or AnomalyConfig())
    labels = list(labels)
    opens = sorted((a for a in alarms if a.get("state") == "open" and a.get("version", 1) == 1),
                   key=lambda a: a["opened_at_ms"])
    by_kind: dict[str, KindScore] = {k: KindScore(delays=[]) for k in ALL_KINDS}
    for label in labels:
        by_kind[label.kind].labels += 1
    absorbed: set[tuple[int, str]] = set()
    first_delay: dict[int, float] = {}
    for alarm in opens:
        kind = alarm["kind"]
        stats = by_kind.setdefault(kind, KindScore(delays=[]))
        stats.alarms += 1
        matched = None
        for index, label in enumerate(labels):
            if label.subject != alarm["device_id"]:
                continue
            if kind != label.kind and kind not in label.also:
                continue
            grace_ms = max(2 * label_window(label, win), MIN_GRACE_S) * 1000
            if not label.start_ms <= alarm["opened_at_ms"] <= label.end_ms + grace_ms:
                continue
            if (index, kind) in absorbed:
                continue
            matched = index
            break
        if matched is None:
            continue
        absorbed.add((matched, kind))
        stats.true_alarms += 1
        label = labels[matched]
        if kind != label.kind:
            stats.consequential += 1
        if kind == label.kind and matched not in first_delay:
            first_delay[matched] = (alarm["opened_at_ms"] - label.start_ms) / 1000
            stats.detected += 1
            stats.delays.append(first_delay[matched])  # type: ignore[union-attr]
    result = {}
    for kind, stats in by_kind.items():
        if stats.labels or stats.alarms:
            window = statistics.median([label_window(lb, win) for lb in labels
                                        if lb.kind == kind]) if stats.labels else win.get(kind, 0)
            result[kind] = stats.as_dict(window)
    return result


def replay(ds: Dataset, config: AnomalyConfig | None = None) -> list[dict[str, Any]]:
    """Run the data set through the in-process engine; returns every alarm event."""
    engine = AnomalyEngine(config)
    community = ds.community
    events: list[dict[str, Any]] = []
    for ts, kind, payload in ds.events():
        if kind == "reading":
            device = community.device(payload.device_id)
            if device is None:
                raise ValueError(f"data set reading for unknown device {payload.device_id}")
            out = engine.on_reading(device, community, payload)
        elif kind == "tick":
            out = engine.on_tick(ts)
        else:
            community = payload
            out = engine.on_registry(payload, now_ms=ts)
        events.extend(alarm.to_message() for alarm in out)
    return events


def _wait_caught_up(settings: Any, group: str, timeout_s: float) -> None:
    """Wait until the worker's consumer group has committed the end of ``ioe.readings``."""
    from kafka import KafkaConsumer, TopicPartition

    from ioe.topics import READINGS

    topic = settings.topic(READINGS)
    # a consumer of the worker's group that never subscribes: it only reads the group's
    # committed offsets (it does not join the group, so it never takes partitions away)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ends = consumer.end_offsets(tps)
            if all((consumer.committed(tp) or 0) >= ends[tp] for tp in tps if ends[tp] > 0):
                return
            time.sleep(0.5)
        print(f"warning: worker group {group} did not catch up in {timeout_s} s",
              file=sys.stderr)
    finally:
        consumer.close(autocommit=False)


def replay_via_kafka(ds: Dataset, *, timeout_s: float = 600.0,
                     group: str | None = None) -> list[dict[str, Any]]:
    """Produce the data set to the real topics and collect what the worker puts on
    ``ioe.anomalies`` until two minutes pass without news after the last reading.
    ``group``: the worker's consumer group (default ``<prefix>ioe-worker``)."""
    import orjson
    from kafka import KafkaConsumer

    from ioe.kafka import ensure_topics, make_producer
    from ioe.settings import get_settings
    from ioe.topics import ANOMALIES, READINGS, REGISTRY

    settings = get_settings()
    group = group or f"{settings.topic_prefix}ioe-worker"
    ensure_topics(settings)
    consumer = KafkaConsumer(settings.topic(ANOMALIES), bootstrap_servers=settings.kafka_bootstrap,
                             auto_offset_reset="latest", enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=1000)
    consumer.poll(timeout_ms=2000)  # join the topic's end before producing
    producer = make_producer(settings)
    sent = 0
    for _ts, kind, payload in ds.events():
        if kind == "registry":
            producer.flush()
            # a registry version takes effect at the reading the worker processes after it:
            # let the worker drain the readings sent so far so it lands at the right time
            _wait_caught_up(settings, group, timeout_s)
            producer.send(settings.topic(REGISTRY), key=COMMUNITY_ID, value=payload.to_json())
            producer.flush()
            time.sleep(3)  # the worker's registry follower applies it
        elif kind == "reading":
            producer.send(settings.topic(READINGS), key=COMMUNITY_ID, value=payload.to_json())
            sent += 1
    producer.flush()
    print(f"produced {sent} readings; collecting alarms", file=sys.stderr)
    events: list[dict[str, Any]] = []
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < min(timeout_s, 120.0):
        batch = consumer.poll(timeout_ms=1000)
        for records in batch.values():
            for record in records:
                message = orjson.loads(record.value)
                if message.get("community_id") == COMMUNITY_ID:
                    events.append(message)
                    idle_since = time.monotonic()
    consumer.close()
    return events


def format_table(result: dict[str, dict[str, Any]]) -> str:
    def pct(x: float | None) -> str:
        return "   -  " if x is None else f"{x:6.3f}"

    lines = [f"{'kind':<19}{'labels':>7}{'alarms':>7}{'conseq.':>8}{'recall':>8}"
             f"{'precis.':>8}{'median delay':>14}{'window':>9}  ok"]
    for kind, r in result.items():
        delay = "-" if r["median_delay_s"] is None else f"{r['median_delay_s']:.0f} s"
        ok = (r["recall"] is None or r["recall"] >= 0.95) and \
             (r["precision"] is None or r["precision"] >= 0.95) and \
             (r["labels"] == 0 or r["delay_ok"])
        lines.append(f"{kind:<19}{r['labels']:>7}{r['alarms']:>7}{r['consequential']:>8}  "
                     f"{pct(r['recall'])}  "
                     f"{pct(r['precision'])}{delay:>14}{r['window_s']:>8.0f}s  "
                     f"{'yes' if ok else 'NO'}")
    return "\n".join(lines)


def run(quick: bool = True, *, days: float | None = None, members: int | None = None,
        seed: int = 1, via_kafka: bool = False,
        config: AnomalyConfig | None = None) -> dict[str, Any]:
    """Generate, replay and score. quick: 2 days × 10 members; else a month × 30 members."""
    days = days if days is not None else (2.0 if quick else 30.0)
    members = members if members is not None else (10 if quick else 30)
    config = config or AnomalyConfig()
    ds = plan(members, days, seed, default_start_ms())
    started = time.perf_counter()
    alarms = replay_via_kafka(ds) if via_kafka else replay(ds, config)
    elapsed = time.perf_counter() - started
    result = score(ds.labels, alarms, config)
    return {"days": days, "members": members, "seed": seed, "via_kafka": via_kafka,
            "replay_s": round(elapsed, 1), "alarm_events": len(alarms),
            "labels": len(ds.labels), "kinds": result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 days × 10 members")
    parser.add_argument("--days", type=float)
    parser.add_argument("--members", type=int)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--via-kafka", action="store_true")
    parser.add_argument("--config", help="YAML file with detector settings")
    args = parser.parse_args(argv)
    config = AnomalyConfig.from_yaml(args.config) if args.config else AnomalyConfig()
    out = run(args.quick, days=args.days, members=args.members, seed=args.seed,
              via_kafka=args.via_kafka, config=config)
    print(f"{out['days']} days × {out['members']} members, seed {out['seed']}, "
          f"{out['labels']} labels, {out['alarm_events']} alarm events, "
          f"replay {out['replay_s']} s{' via Kafka' if out['via_kafka'] else ''}")
    print(format_table(out["kinds"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
