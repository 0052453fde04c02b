from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.utils.module_loading import import_string
from django.views.decorators.http import require_POST

from . import quota
from .ai import AIError
from .models import Profile, Recipe, Remix

FEATURE = "remix"
HOLD_FOR = timedelta(minutes=2)  # an abandoned hold gives its credit back after this


@require_POST
def remix(request, recipe_id):
    profile = get_object_or_404(Profile, handle=request.headers.get("X-Profile", ""))
    recipe = get_object_or_404(Recipe, pk=recipe_id)

    # 1. Reserve before the AI call (its own short transaction: autocommit).
    grant = quota.reserve(profile.handle, FEATURE, hold_for=HOLD_FOR)
    if not grant.granted:
        response = JsonResponse(
            {
                "error": "daily remix quota reached",
                "used": grant.used,
                "limit": grant.credit_limit,
                "resets_at": grant.resets_at,
            },
            status=429,
        )
        response["Retry-After"] = str(grant.retry_after)
        return response

    # 2. The slow, failure-prone part, with no transaction or row lock open.
    try:
        text = import_string(settings.RECIPES_AI)(recipe)
    except AIError:
        quota.release(grant.reservation)
        return JsonResponse({"error": "the AI failed; no credit was spent"}, status=502)
    except BaseException:
        quota.release(grant.reservation)
        raise

    # 3. Save the result and spend the credit in one transaction: both or neither.
    try:
        with transaction.atomic():
            saved = Remix.objects.create(recipe=recipe, profile=profile, text=text)
            after = quota.commit(grant.reservation)
    except BaseException:
        quota.release(grant.reservation)  # the commit rolled back with the save
        raise
    return JsonResponse(
        {
            "remix": saved.pk,
            "text": text,
            "used": after.used,
            "limit": after.credit_limit,
            "resets_at": after.resets_at,
        },
        status=201,
    )
