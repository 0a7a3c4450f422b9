-- Alarms open now, most severe and oldest first; params: community.
-- FINAL: an alarm is one row per version; only its latest state counts.
SELECT
    alarm_id,
    device_id,
    member_id,
    kind,
    severity,
    toUInt32(opened_at) AS opened_at_s
FROM anomalies FINAL
WHERE community_id = %(community)s AND state = 'open'
ORDER BY indexOf(['critical', 'warning', 'info'], severity), opened_at_s, alarm_id
