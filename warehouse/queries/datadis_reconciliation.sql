-- Monitoring vs Datadis per member and Madrid day: the monitored consumption of the balances
-- (source 'meter') against the distributor's hourly energy (readings of device datadis:<CUPS>);
-- params: community, start, end. difference_pct > a few % points at a meter to check.
SELECT
    member_id,
    day,
    round(monitored_wh / 1000, 3) AS monitored_kwh,
    round(datadis_wh / 1000, 3) AS datadis_kwh,
    if(datadis_wh > 0, round(100 * (monitored_wh - datadis_wh) / datadis_wh, 2), NULL)
        AS difference_pct
FROM
(
    SELECT
        member_id,
        concat('datadis:', cups) AS device_id,
        toDate(toTimeZone(interval_start, 'Europe/Madrid')) AS day,
        sum(consumption_wh) AS monitored_wh
    FROM balances FINAL
    WHERE community_id = %(community)s AND interval_s = 3600 AND source = 'meter'
      AND interval_start >= toDateTime(%(start)s) AND interval_start < toDateTime(%(end)s)
    GROUP BY member_id, device_id, day
) AS monitored
ALL INNER JOIN
(
    SELECT
        device_id,
        toDate(toTimeZone(ts, 'Europe/Madrid')) AS day,
        sum(interval_energy_wh) AS datadis_wh
    FROM readings FINAL
    WHERE community_id = %(community)s AND source = 'datadis'
      AND ts >= toDateTime(%(start)s) AND ts < toDateTime(%(end)s)
    GROUP BY device_id, day
) AS distributor USING (device_id, day)
ORDER BY member_id, day
