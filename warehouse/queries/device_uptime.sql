-- Device uptime per Madrid day: the share of the day's hours with at least one reading;
-- params: community, start, end (whole Madrid days; a day has 23, 24 or 25 hours).
SELECT
    device_id,
    day,
    hours_with_data,
    round(hours_with_data / day_hours, 4) AS uptime
FROM
(
    SELECT
        device_id,
        toDate(toTimeZone(ts, 'Europe/Madrid')) AS day,
        uniqExact(toStartOfHour(ts)) AS hours_with_data,
        (toUInt32(toDateTime(toString(day + 1) || ' 00:00:00', 'Europe/Madrid'))
         - toUInt32(toDateTime(toString(day) || ' 00:00:00', 'Europe/Madrid'))) / 3600
            AS day_hours
    FROM readings
    WHERE community_id = %(community)s
      AND ts >= toDateTime(%(start)s) AND ts < toDateTime(%(end)s)
    GROUP BY device_id, day
)
ORDER BY device_id, day
