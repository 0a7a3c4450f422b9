-- Data quality per member and Madrid month: hours whose balance is incomplete (a meter gap or
-- counter reset) and hours settled from Datadis instead of the monitoring meter; params: community.
SELECT
    member_id,
    toStartOfMonth(toDate(toTimeZone(interval_start, 'Europe/Madrid'))) AS month,
    count() AS hours,
    countIf(complete = 0) AS incomplete_hours,
    countIf(source = 'datadis') AS datadis_hours
FROM balances FINAL
WHERE community_id = %(community)s AND interval_s = 3600
GROUP BY member_id, month
ORDER BY month, member_id
