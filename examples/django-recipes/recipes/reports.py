"""The month-end usage report, from quota.usage_history.

quota.usage_history has one row per closed budget window: (team, resource,
window_start, window_end, credit_limit, unlimited, used).  It includes
windows that have ended but that no call has rolled over yet, so a billing
job run at 00:05 on the 1st sees every profile's last month, whether the
profile has remixed since or not.  The report is one query: the view's
stored windows come from an indexed scan of quota.history, the ones not
rolled over yet from quota.accounts and quota.slots, with no function call
per row (README, "History, retention and alerts").
"""
from collections import namedtuple

from django.db import connection

Line = namedtuple("Line", "handle feature windows used limited_windows unlimited")

REPORT = """
    SELECT h.team, h.resource, count(*), sum(h.used),
           count(*) FILTER (WHERE NOT h.unlimited AND h.used >= h.credit_limit), bool_or(h.unlimited)
      FROM quota.usage_history h
     WHERE h.window_start >= %s AND h.window_end <= %s
     GROUP BY h.team, h.resource
     ORDER BY h.team, h.resource
"""


def usage_report(start, end):
    """Per profile and feature: the daily windows that closed within [start, end), the credits used in them,
    and on how many of those days the profile reached its limit."""
    with connection.cursor() as cursor:
        cursor.execute(REPORT, [start, end])
        return [Line(*row) for row in cursor.fetchall()]
