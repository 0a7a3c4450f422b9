-- Alarm actions (dashboards, control centre): an operator acknowledges or assigns an open
-- alarm. The alarm itself stays the detector's (table anomalies); this is the people's side of
-- it, kept as history: every action is a row, none is ever overwritten, so "who acknowledged,
-- who assigned it to whom, and when" can be read back in order. ReplacingMergeTree(version) on
-- (community_id, alarm_id, action_id) only so that the same action stored twice (a retried
-- request) is one row. Column list: ioe.messages.ALARM_ACTION_COLUMNS.

CREATE TABLE IF NOT EXISTS {db}.alarm_actions
(
    action_id String,
    alarm_id String,
    community_id {ID},
    action {ID},
    actor String,
    token_id String,
    at_ms {MS},
    assignee String,
    note String,
    at {TIME},
    version {MS}
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(at)
ORDER BY (community_id, alarm_id, action_id);
