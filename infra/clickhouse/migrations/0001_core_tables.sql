-- Core sink tables. ReplacingMergeTree(version) ordered by the natural key makes every sink
-- idempotent under replay: at-least-once delivery never double counts (query with FINAL or argMax).
-- A template (ioe/clickhouse.py TYPE_GATES): the ID, TIME, NTIME, MS, COUNTER and WH tokens render
-- to the historical types (String, DateTime, UInt64, Nullable(Float64), Float64) on 18.16,
-- and to LowCardinality(String), DateTime('UTC') and Delta/Gorilla+ZSTD codecs on 20.3 and later.
-- Column names are the same everywhere; no DateTime64 (see docs/data-engineering.md), no TTL.

CREATE TABLE IF NOT EXISTS {db}.readings
(
    community_id {ID},
    device_id {ID},
    ts {TIME},
    ts_ms {MS},
    source {ID},
    quality {ID},
    power_w Nullable(Float64),
    energy_wh {COUNTER},
    energy_returned_wh {COUNTER},
    interval_s Nullable(UInt32),
    interval_energy_wh Nullable(Float64),
    interval_energy_returned_wh Nullable(Float64),
    voltage_v Nullable(Float64),
    current_a Nullable(Float64),
    frequency_hz Nullable(Float64),
    power_factor Nullable(Float64),
    status Nullable(String),
    version {MS}
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(ts)
ORDER BY (community_id, device_id, ts_ms);

-- One row per member and closed interval (interval_s = 900 or 3600); energies in Wh.
-- generation_wh is the community's net generation G of the interval, assigned_wh = coefficient * G.
CREATE TABLE IF NOT EXISTS {db}.balances
(
    community_id {ID},
    member_id {ID},
    cups {ID},
    interval_start {TIME},
    interval_s UInt32,
    coefficient Float64,
    generation_wh {WH},
    consumption_wh {WH},
    assigned_wh {WH},
    self_consumed_wh {WH},
    surplus_wh {WH},
    import_wh {WH},
    source {ID},
    complete UInt8,
    computed_at {TIME},
    version {MS}
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(interval_start)
ORDER BY (community_id, member_id, interval_s, interval_start);

CREATE TABLE IF NOT EXISTS {db}.anomalies
(
    alarm_id String,
    community_id {ID},
    device_id {ID},
    member_id {ID},
    kind {ID},
    severity {ID},
    state {ID},
    opened_at {TIME},
    closed_at {NTIME},
    evidence String,
    updated_at {TIME},
    version {MS}
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(opened_at)
ORDER BY (community_id, alarm_id);
