from django.db import models


class Profile(models.Model):
    """A cook.  Their plan decides their daily AI budgets (see recipes.budgets)."""

    PLANS = [("free", "Free"), ("pro", "Pro"), ("unlimited", "Unlimited")]

    handle = models.SlugField(unique=True)
    plan = models.CharField(max_length=16, choices=PLANS, default="free")

    def __str__(self):
        return self.handle


class Recipe(models.Model):
    title = models.CharField(max_length=200)
    ingredients = models.TextField()


class Remix(models.Model):
    """What the AI made of a recipe, saved in the same transaction as the credit's commit."""

    recipe = models.ForeignKey(Recipe, on_delete=models.CASCADE)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
