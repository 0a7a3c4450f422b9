-- The community's average day: mean generation and consumption per Madrid hour of day (Wh)
-- over a period; params: community, start, end.
SELECT
    hour_of_day,
    round(avg(g), 1) AS mean_generation_wh,
    round(avg(c), 1) AS mean_consumption_wh,
    count() AS hours
FROM
(
    SELECT
        interval_start,
        toHour(toTimeZone(interval_start, 'Europe/Madrid')) AS hour_of_day,
        max(generation_wh) AS g,
        sum(consumption_wh) AS c
    FROM balances FINAL
    WHERE community_id = %(community)s AND interval_s = 3600
      AND interval_start >= toDateTime(%(start)s) AND interval_start < toDateTime(%(end)s)
    GROUP BY interval_start, hour_of_day
)
GROUP BY hour_of_day
ORDER BY hour_of_day
