-- Core sink tables. ReplacingMergeTree(version) ordered by the natural key makes every sink
-- idempotent under replay: at-least-once delivery never double counts (query with FINAL or argMax).
-- Portable DDL: runs on Debian's ClickHouse 18.16 and on current releases (no DateTime64,
-- no LowCardinality, no TTL).

CREATE TABLE IF NOT EXISTS {db}.readings
(
    community_id String,
    device_id String,
    ts DateTime,
    ts_ms UInt64,
    source String,
    quality String,
    power_w Nullable(Float64),
    energy_wh Nullable(Float64),
    energy_returned_wh Nullable(Float64),
    interval_s Nullable(UInt32),
    interval_energy_wh Nullable(Float64),
    interval_energy_returned_wh Nullable(Float64),
    voltage_v Nullable(Float64),
    current_a Nullable(Float64),
    frequency_hz Nullable(Float64),
    power_factor Nullable(Float64),
    status Nullable(String),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(ts)
ORDER BY (community_id, device_id, ts_ms);

-- One row per member and closed interval (interval_s = 900 or 3600); energies in Wh.
-- generation_wh is the community's net generation G of the interval, assigned_wh = coefficient * G.
CREATE TABLE IF NOT EXISTS {db}.balances
(
    community_id String,
    member_id String,
    cups String,
    interval_start DateTime,
    interval_s UInt32,
    coefficient Float64,
    generation_wh Float64,
    consumption_wh Float64,
    assigned_wh Float64,
    self_consumed_wh Float64,
    surplus_wh Float64,
    import_wh Float64,
    source String,
    complete UInt8,
    computed_at DateTime,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(interval_start)
ORDER BY (community_id, member_id, interval_s, interval_start);

CREATE TABLE IF NOT EXISTS {db}.anomalies
(
    alarm_id String,
    community_id String,
    device_id String,
    member_id String,
    kind String,
    severity String,
    state String,
    opened_at DateTime,
    closed_at Nullable(DateTime),
    evidence String,
    updated_at DateTime,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(opened_at)
ORDER BY (community_id, alarm_id);
