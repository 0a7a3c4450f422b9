-- Freshness: every device's latest reading and how old it is at a reference time; params:
-- community, at (UTC 'YYYY-MM-DD hh:mm:ss'). argMax picks the newest sample without FINAL.
SELECT
    device_id,
    max(ts_ms) AS last_ts_ms,
    argMax(power_w, ts_ms) AS last_power_w,
    toUInt32(toDateTime(%(at)s)) - intDiv(max(ts_ms), 1000) AS age_s
FROM readings
WHERE community_id = %(community)s AND ts <= toDateTime(%(at)s)
GROUP BY device_id
ORDER BY device_id
