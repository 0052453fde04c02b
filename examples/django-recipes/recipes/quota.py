"""The quota calls this app makes, as thin functions over Django's connection.

Each runs in the caller's transaction: in autocommit mode (Django's default)
that is a transaction of its own; inside ``transaction.atomic()`` it commits
or rolls back with the app's own writes.
"""
from collections import namedtuple

from django.db import connection

Grant = namedtuple(
    "Grant", "granted reservation used held credit_limit remaining resets_at retry_after"
)

_GRANT_COLUMNS = ", ".join(Grant._fields)


def _grant(sql, params):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_GRANT_COLUMNS} FROM {sql}", params)
        return Grant(*cursor.fetchone())


def reserve(team, resource, amount=1, hold_for=None, idempotency_key=None):
    """Hold credits before the expensive work; ``hold_for`` is a timedelta."""
    return _grant(
        "quota.reserve_credit(%s, %s, %s, %s, %s)",
        [team, amount, resource, hold_for, idempotency_key],
    )


def commit(reservation, amount=None):
    return _grant("quota.commit_credit(%s, %s)", [reservation, amount])


def release(reservation):
    with connection.cursor() as cursor:
        cursor.execute("SELECT quota.release_credit(%s)", [reservation])
        return cursor.fetchone()[0]


def set_account(cursor, team, resource, credit_limit, period, anchor, unlimited):
    """Create or update a budget (an administrative call: not for app roles)."""
    cursor.execute(
        "SELECT quota.set_account(%s, %s, %s, %s::interval, %s::timestamptz, %s)",
        [team, credit_limit, resource, period, anchor, unlimited],
    )
