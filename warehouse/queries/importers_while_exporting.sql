-- Members who import most while the community exports (hours with community surplus > 0):
-- candidates for load shifting; params: community, start, end.
SELECT
    member_id,
    round(sum(import_wh) / 1000, 3) AS import_kwh_while_exporting,
    count() AS hours
FROM balances FINAL
WHERE community_id = %(community)s AND interval_s = 3600
  AND interval_start >= toDateTime(%(start)s) AND interval_start < toDateTime(%(end)s)
  AND interval_start IN
  (
      SELECT interval_start
      FROM balances FINAL
      WHERE community_id = %(community)s AND interval_s = 3600
        AND interval_start >= toDateTime(%(start)s) AND interval_start < toDateTime(%(end)s)
      GROUP BY interval_start
      HAVING sum(surplus_wh) > 0
  )
GROUP BY member_id
HAVING import_kwh_while_exporting > 0
ORDER BY import_kwh_while_exporting DESC, member_id
