-- Self-sufficiency (self-consumed / consumed) and self-consumption (self-consumed / generated)
-- per community and Madrid month; params: community. G is the same on every member's row of an
-- hour, so it is taken once per hour (max) before summing.
SELECT
    community_id,
    month,
    round(sum(g) / 1000, 3) AS generation_kwh,
    round(sum(c) / 1000, 3) AS consumption_kwh,
    round(sum(sc) / 1000, 3) AS self_consumed_kwh,
    if(sum(c) > 0, round(sum(sc) / sum(c), 4), NULL) AS self_sufficiency,
    if(sum(g) > 0, round(sum(sc) / sum(g), 4), NULL) AS self_consumption
FROM
(
    SELECT
        community_id,
        interval_start,
        toStartOfMonth(toDate(toTimeZone(interval_start, 'Europe/Madrid'))) AS month,
        max(generation_wh) AS g,
        sum(consumption_wh) AS c,
        sum(self_consumed_wh) AS sc
    FROM balances FINAL
    WHERE community_id = %(community)s AND interval_s = 3600
    GROUP BY community_id, interval_start, month
)
GROUP BY community_id, month
ORDER BY month
