-- Daily and monthly totals per member and per community, in Europe/Madrid calendar days.
-- Plain views over FINAL (not materialized sums), so a replayed or re-versioned balance row
-- is counted once.

CREATE VIEW IF NOT EXISTS {db}.member_daily AS
SELECT
    community_id,
    member_id,
    toDate(toTimeZone(interval_start, 'Europe/Madrid')) AS day,
    sum(consumption_wh) / 1000 AS consumption_kwh,
    sum(assigned_wh) / 1000 AS assigned_kwh,
    sum(self_consumed_wh) / 1000 AS self_consumed_kwh,
    sum(surplus_wh) / 1000 AS surplus_kwh,
    sum(import_wh) / 1000 AS import_kwh,
    count() AS hours
FROM {db}.balances FINAL
WHERE interval_s = 3600
GROUP BY community_id, member_id, day;

CREATE VIEW IF NOT EXISTS {db}.member_monthly AS
SELECT
    community_id,
    member_id,
    toStartOfMonth(toDate(toTimeZone(interval_start, 'Europe/Madrid'))) AS month,
    sum(consumption_wh) / 1000 AS consumption_kwh,
    sum(assigned_wh) / 1000 AS assigned_kwh,
    sum(self_consumed_wh) / 1000 AS self_consumed_kwh,
    sum(surplus_wh) / 1000 AS surplus_kwh,
    sum(import_wh) / 1000 AS import_kwh,
    count() AS hours
FROM {db}.balances FINAL
WHERE interval_s = 3600
GROUP BY community_id, member_id, month;

CREATE VIEW IF NOT EXISTS {db}.community_daily AS
SELECT
    community_id,
    toDate(toTimeZone(interval_start, 'Europe/Madrid')) AS day,
    sum(consumption_wh) / 1000 AS consumption_kwh,
    sum(assigned_wh) / 1000 AS assigned_kwh,
    sum(self_consumed_wh) / 1000 AS self_consumed_kwh,
    sum(surplus_wh) / 1000 AS surplus_kwh,
    sum(import_wh) / 1000 AS import_kwh
FROM {db}.balances FINAL
WHERE interval_s = 3600
GROUP BY community_id, day;

CREATE VIEW IF NOT EXISTS {db}.community_monthly AS
SELECT
    community_id,
    toStartOfMonth(toDate(toTimeZone(interval_start, 'Europe/Madrid'))) AS month,
    sum(consumption_wh) / 1000 AS consumption_kwh,
    sum(assigned_wh) / 1000 AS assigned_kwh,
    sum(self_consumed_wh) / 1000 AS self_consumed_kwh,
    sum(surplus_wh) / 1000 AS surplus_kwh,
    sum(import_wh) / 1000 AS import_kwh
FROM {db}.balances FINAL
WHERE interval_s = 3600
GROUP BY community_id, month;
