-- Active control (control/, README "Control activo"): every command and every result, kept as
-- the audit trail of who asked what of which device, why, what was written and what the device
-- read back. ReplacingMergeTree(version) on (community_id, command_id): a command stored twice
-- (by the issuer and by the sink) or a result reported twice (edge and issuer both saying
-- "expired") is one row. Column lists come from ioe/messages.py (COMMAND_COLUMNS,
-- COMMAND_RESULT_COLUMNS); value, requested, readback and written are JSON text.

CREATE TABLE IF NOT EXISTS {db}.commands
(
    command_id String,
    community_id {ID},
    device_id {ID},
    key {ID},
    value String,
    requested_by String,
    reason String,
    issued_at_ms {MS},
    deadline {TIME},
    revert_s Nullable(Int64),
    rule_id {ID},
    dry_run UInt8,
    status {ID},
    refusal String,
    issued_at {TIME},
    version {MS}
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(issued_at)
ORDER BY (community_id, command_id);

CREATE TABLE IF NOT EXISTS {db}.command_results
(
    command_id String,
    community_id {ID},
    device_id {ID},
    key {ID},
    status {ID},
    requested String,
    readback String,
    executor {ID},
    executed_at_ms {MS},
    detail String,
    written String,
    executed_at {TIME},
    version {MS}
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(executed_at)
ORDER BY (community_id, command_id);
