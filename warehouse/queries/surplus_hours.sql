-- Hours in which the community exported surplus (sum of members' surplus > 0), largest first;
-- params: community, start, end (UTC 'YYYY-MM-DD hh:mm:ss', end exclusive).
SELECT
    toUInt32(interval_start) AS hour_start,
    toString(toTimeZone(interval_start, 'Europe/Madrid')) AS local_time,
    round(max(generation_wh), 3) AS generation_wh,
    round(sum(surplus_wh), 3) AS surplus_wh
FROM balances FINAL
WHERE community_id = %(community)s AND interval_s = 3600
  AND interval_start >= toDateTime(%(start)s) AND interval_start < toDateTime(%(end)s)
GROUP BY interval_start
HAVING surplus_wh > 0
ORDER BY surplus_wh DESC, hour_start
