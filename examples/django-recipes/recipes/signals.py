from django.db import connection
from django.db.models.signals import post_save
from django.dispatch import receiver

from .budgets import ensure_budgets
from .models import Profile


@receiver(post_save, sender=Profile)
def profile_budgets(sender, instance, **kwargs):
    with connection.cursor() as cursor:
        ensure_budgets(cursor, instance.handle, instance.plan)
