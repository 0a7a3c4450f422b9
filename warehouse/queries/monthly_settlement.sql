-- Monthly settlement per member (kWh), calendar months in Europe/Madrid; params: community.
-- FINAL: a replayed or re-versioned balance row counts once.
SELECT
    member_id,
    toStartOfMonth(toDate(toTimeZone(interval_start, 'Europe/Madrid'))) AS month,
    round(sum(consumption_wh) / 1000, 3) AS consumption_kwh,
    round(sum(assigned_wh) / 1000, 3) AS assigned_kwh,
    round(sum(self_consumed_wh) / 1000, 3) AS self_consumed_kwh,
    round(sum(surplus_wh) / 1000, 3) AS surplus_kwh,
    round(sum(import_wh) / 1000, 3) AS import_kwh,
    count() AS hours
FROM balances FINAL
WHERE community_id = %(community)s AND interval_s = 3600
GROUP BY member_id, month
ORDER BY month, member_id
