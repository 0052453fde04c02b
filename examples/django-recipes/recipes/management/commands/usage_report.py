"""python3 manage.py usage_report --month 2026-10: last month's remixes per profile, as CSV."""
import csv
from datetime import datetime, timezone

from django.core.management.base import BaseCommand, CommandError

from recipes.reports import usage_report


def month_bounds(text):
    try:
        first = datetime.strptime(text, "%Y-%m").replace(tzinfo=timezone.utc)
    except ValueError as exc:
        raise CommandError(f"--month must look like 2026-10, not {text!r}") from exc
    following = first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)
    return first, following


class Command(BaseCommand):
    help = "Usage per profile and AI feature over the daily windows that closed in a month (CSV)."

    def add_arguments(self, parser):
        parser.add_argument("--month", help="YYYY-MM (UTC); default: last month")
        parser.add_argument("--from", dest="start", help="ISO instant (instead of --month)")
        parser.add_argument("--to", dest="end", help="ISO instant (instead of --month)")

    def handle(self, *args, month=None, start=None, end=None, **options):
        if start or end:
            if not (start and end):
                raise CommandError("--from and --to go together")
            start, end = datetime.fromisoformat(start), datetime.fromisoformat(end)
        else:
            if month is None:
                now = datetime.now(timezone.utc)
                month = f"{now.year - 1}-12" if now.month == 1 else f"{now.year}-{now.month - 1:02d}"
            start, end = month_bounds(month)
        out = csv.writer(self.stdout)
        out.writerow(["profile", "feature", "days", "used", "days_at_limit", "unlimited"])
        for line in usage_report(start, end):
            out.writerow([line.handle, line.feature, line.windows, line.used, line.limited_windows, line.unlimited])
