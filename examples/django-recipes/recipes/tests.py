"""Tests run by Django's own runner: its test database is built by the migrations
(so CREATE EXTENSION quota runs there), and every quota call is real."""
import io
from datetime import datetime, timedelta, timezone
from unittest import mock

from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import TestCase, TransactionTestCase, override_settings

from . import quota
from .ai import AIError
from .models import Profile, Recipe, Remix
from .reports import usage_report


def budget(handle, feature="remix"):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT credit_limit, used, held, unlimited, period, resets_at"
            "  FROM quota.usage WHERE team = %s AND resource = %s",
            [handle, feature],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip(["credit_limit", "used", "held", "unlimited", "period", "resets_at"], row))


def hold_states(handle):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT state, count(*) FROM quota.holds WHERE team = %s GROUP BY state ORDER BY state", [handle]
        )
        return dict(cursor.fetchall())


def next_utc_midnight():
    now = datetime.now(timezone.utc)
    return datetime(now.year, now.month, now.day, tzinfo=timezone.utc) + timedelta(days=1)


def failing_ai(recipe):
    raise AIError("model timed out")


class MigrationTests(TestCase):
    def test_the_migration_installed_the_extension(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'quota'")
            self.assertIsNotNone(cursor.fetchone())

    def test_new_profiles_get_daily_budgets_and_plan_changes_keep_todays_usage(self):
        cook = Profile.objects.create(handle="ana", plan="free")
        self.assertEqual(budget("ana")["credit_limit"], 3)
        self.assertEqual(budget("ana")["period"], timedelta(days=1))
        self.assertEqual(budget("ana")["resets_at"], next_utc_midnight())
        recipe = Recipe.objects.create(title="Soup", ingredients="leeks")
        self.client.post(f"/recipes/{recipe.pk}/remix", HTTP_X_PROFILE="ana")
        cook.plan = "pro"
        cook.save()
        self.assertEqual((budget("ana")["credit_limit"], budget("ana")["used"]), (100, 1))


class MigrationOfExistingProfilesTests(TransactionTestCase):
    """Profiles made before 0002 ran get their budgets from the migration itself."""

    def test_migrating_forward_creates_budgets_for_existing_profiles(self):
        executor = MigrationExecutor(connection)
        executor.migrate([("recipes", "0001_initial")])
        old_state = executor.loader.project_state(("recipes", "0001_initial")).apps
        # The historical model: saving it fires no signal, as in a real old database.
        old_state.get_model("recipes", "Profile").objects.create(handle="bo", plan="pro")
        self.assertIsNone(budget("bo"))

        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
        self.assertEqual(budget("bo")["credit_limit"], 100)
        self.assertEqual(budget("bo")["period"], timedelta(days=1))


class RemixTests(TestCase):
    def setUp(self):
        self.recipe = Recipe.objects.create(title="Shakshuka", ingredients="eggs, tomatoes, cumin")
        Profile.objects.create(handle="free-cook", plan="free")
        Profile.objects.create(handle="big-kitchen", plan="unlimited")

    def remix(self, handle="free-cook"):
        return self.client.post(f"/recipes/{self.recipe.pk}/remix", HTTP_X_PROFILE=handle)

    def test_a_remix_within_the_quota_is_saved_and_spends_one_credit(self):
        response = self.remix()
        self.assertEqual(response.status_code, 201)
        self.assertEqual((response.json()["used"], response.json()["limit"]), (1, 3))
        self.assertEqual(Remix.objects.count(), 1)
        self.assertEqual((budget("free-cook")["used"], budget("free-cook")["held"]), (1, 0))
        self.assertEqual(hold_states("free-cook"), {"committed": 1})

    def test_over_the_daily_quota_answers_429_with_retry_after_until_midnight_utc(self):
        for _ in range(3):
            self.assertEqual(self.remix().status_code, 201)
        response = self.remix()
        self.assertEqual(response.status_code, 429)
        retry_after = int(response["Retry-After"])
        expected = (next_utc_midnight() - datetime.now(timezone.utc)).total_seconds()
        self.assertGreaterEqual(retry_after, 1)
        self.assertLessEqual(abs(retry_after - expected), 2)
        self.assertEqual(response.json()["used"], 3)
        # The denial changed nothing.
        self.assertEqual(Remix.objects.count(), 3)
        self.assertEqual((budget("free-cook")["used"], budget("free-cook")["held"]), (3, 0))
        self.assertEqual(hold_states("free-cook"), {"committed": 3})

    @override_settings(RECIPES_AI="recipes.tests.failing_ai")
    def test_an_ai_failure_releases_the_hold_and_spends_nothing(self):
        response = self.remix()
        self.assertEqual(response.status_code, 502)
        self.assertEqual((budget("free-cook")["used"], budget("free-cook")["held"]), (0, 0))
        self.assertEqual(hold_states("free-cook"), {"released": 1})
        self.assertEqual(Remix.objects.count(), 0)

    def test_a_failure_after_the_commit_rolls_it_back_with_the_save_and_releases_the_hold(self):
        real_commit = quota.commit

        def commit_then_fail(reservation):
            real_commit(reservation)
            raise RuntimeError("connection to the cache lost")

        with mock.patch.object(quota, "commit", side_effect=commit_then_fail):
            with self.assertRaises(RuntimeError):
                self.remix()
        self.assertEqual(Remix.objects.count(), 0)
        self.assertEqual((budget("free-cook")["used"], budget("free-cook")["held"]), (0, 0))
        self.assertEqual(hold_states("free-cook"), {"released": 1})

    def test_unlimited_profiles_are_never_refused_and_still_metered(self):
        for _ in range(10):
            self.assertEqual(self.remix("big-kitchen").status_code, 201)
        self.assertTrue(budget("big-kitchen")["unlimited"])
        self.assertEqual(budget("big-kitchen")["used"], 10)

    def test_unknown_profiles_and_recipes_are_404_and_spend_nothing(self):
        self.assertEqual(self.remix("nobody").status_code, 404)
        self.assertEqual(
            self.client.post("/recipes/999999/remix", HTTP_X_PROFILE="free-cook").status_code, 404
        )
        self.assertEqual(budget("free-cook")["used"], 0)
        self.assertEqual(hold_states("free-cook"), {})


def age_budget(handle, days, feature="remix"):
    """Days pass: move the profile's stored budget window (and its slots') back, as if it had been spent then."""
    with connection.cursor() as cursor:
        for table in ("quota.accounts", "quota.slots"):
            cursor.execute(
                f"UPDATE {table} SET window_start = window_start - make_interval(days => %s),"
                "  resets_at = resets_at - make_interval(days => %s) WHERE team = %s AND resource = %s",
                [days, days, handle, feature],
            )


class UsageReportTests(TestCase):
    def setUp(self):
        self.recipe = Recipe.objects.create(title="Shakshuka", ingredients="eggs, tomatoes, cumin")
        Profile.objects.create(handle="free-cook", plan="free")
        Profile.objects.create(handle="pro-cook", plan="pro")
        Profile.objects.create(handle="big-kitchen", plan="unlimited")

    def remix(self, handle):
        return self.client.post(f"/recipes/{self.recipe.pk}/remix", HTTP_X_PROFILE=handle)

    def test_the_report_has_every_closed_day_whether_rolled_over_or_not(self):
        # free-cook: 3 remixes (its limit) three days ago, 1 today (which rolls that day over into the history).
        for _ in range(3):
            self.assertEqual(self.remix("free-cook").status_code, 201)
        age_budget("free-cook", 3)
        self.assertEqual(self.remix("free-cook").status_code, 201)
        # pro-cook: 2 remixes two days ago and nothing since: that day was never rolled over.
        for _ in range(2):
            self.assertEqual(self.remix("pro-cook").status_code, 201)
        age_budget("pro-cook", 2)
        # big-kitchen: unlimited, 4 remixes yesterday, metered.
        for _ in range(4):
            self.assertEqual(self.remix("big-kitchen").status_code, 201)
        age_budget("big-kitchen", 1)
        today = next_utc_midnight() - timedelta(days=1)
        report = {(line.handle, line.feature): line for line in usage_report(today - timedelta(days=7), today)}
        self.assertEqual(report[("free-cook", "remix")][2:], (1, 3, 1, False))
        self.assertEqual(report[("pro-cook", "remix")][2:], (1, 2, 0, False))
        self.assertEqual(report[("big-kitchen", "remix")][2:], (1, 4, 0, True))
        # Today's window is still open: not in the report.
        self.assertEqual(len(report), 3)
        self.assertEqual(usage_report(today, today + timedelta(days=1)), [])

    def test_the_command_prints_the_report_as_csv(self):
        for _ in range(2):
            self.assertEqual(self.remix("pro-cook").status_code, 201)
        age_budget("pro-cook", 1)
        today = next_utc_midnight() - timedelta(days=1)
        out = io.StringIO()
        call_command("usage_report", "--from", (today - timedelta(days=2)).isoformat(), "--to", today.isoformat(),
                     stdout=out)
        self.assertEqual(out.getvalue().splitlines(),
                         ["profile,feature,days,used,days_at_limit,unlimited", "pro-cook,remix,1,2,0,False"])
