-- Alarms per kind opened in a period: how many, how many still open, mean duration of the
-- closed ones (minutes); params: community, start, end.
SELECT
    kind,
    count() AS alarms,
    countIf(state = 'open') AS still_open,
    round(avgIf((toUInt32(closed_at) - toUInt32(opened_at)) / 60, state = 'closed'), 1)
        AS mean_minutes_closed
FROM anomalies FINAL
WHERE community_id = %(community)s
  AND opened_at >= toDateTime(%(start)s) AND opened_at < toDateTime(%(end)s)
GROUP BY kind
ORDER BY alarms DESC, kind
