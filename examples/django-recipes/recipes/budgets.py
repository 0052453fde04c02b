"""Per-feature daily budgets by plan.

Every profile gets one quota account per AI feature, keyed (handle, feature),
resetting every day at 00:00 UTC.  Used by the migration (for profiles that
already exist) and by a post_save signal (for new profiles and plan changes;
quota.set_account keeps what was used today).
"""
from . import quota

DAILY = "1 day"
MIDNIGHT_UTC = "2024-01-01 00:00+00"

# feature -> plan -> credits per day; None = unlimited (still metered)
FEATURES = {
    "remix": {"free": 3, "pro": 100, "unlimited": None},
}


def ensure_budgets(cursor, handle, plan):
    for feature, limits in FEATURES.items():
        limit = limits[plan]
        quota.set_account(
            cursor, handle, feature, limit if limit is not None else 0, DAILY, MIDNIGHT_UTC, limit is None
        )
