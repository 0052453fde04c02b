"""Install the quota extension and give every existing profile its daily budgets.

CREATE EXTENSION needs a role allowed to create it (a superuser, as quota is
not a trusted extension): run migrations as the database owner/admin and the
web app as a role with only USAGE on schema quota.  Going back leaves the
extension and the budgets in place: they hold the teams' spending history.
"""
from django.db import migrations

from recipes.budgets import ensure_budgets


def budgets_for_existing_profiles(apps, schema_editor):
    Profile = apps.get_model("recipes", "Profile")
    with schema_editor.connection.cursor() as cursor:
        for handle, plan in Profile.objects.values_list("handle", "plan"):
            ensure_budgets(cursor, handle, plan)


class Migration(migrations.Migration):

    dependencies = [("recipes", "0001_initial")]

    operations = [
        migrations.RunSQL("CREATE EXTENSION IF NOT EXISTS quota", reverse_sql=migrations.RunSQL.noop),
        migrations.RunPython(budgets_for_existing_profiles, reverse_code=migrations.RunPython.noop),
    ]
