-- The hours of highest community import from the grid (what a battery or a flexible tariff
-- would shave); params: community, start, end, limit.
SELECT
    toUInt32(interval_start) AS hour_start,
    toString(toTimeZone(interval_start, 'Europe/Madrid')) AS local_time,
    round(sum(import_wh), 3) AS import_wh
FROM balances FINAL
WHERE community_id = %(community)s AND interval_s = 3600
  AND interval_start >= toDateTime(%(start)s) AND interval_start < toDateTime(%(end)s)
GROUP BY interval_start
ORDER BY import_wh DESC, hour_start
LIMIT %(limit)s
