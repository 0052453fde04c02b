"""Settings for the recipes example: one app, PostgreSQL named by the usual PG* variables."""
import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "recipes-example-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = ["recipes"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "recipes_site.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("RECIPES_DB", "recipes"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "HOST": os.environ.get("PGHOST", ""),
        "PORT": os.environ.get("PGPORT", ""),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "TEST": {"NAME": os.environ.get("RECIPES_TEST_DB", "test_recipes")},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"

# The AI behind "remix"; tests replace it.
RECIPES_AI = "recipes.ai.fake_remix"
