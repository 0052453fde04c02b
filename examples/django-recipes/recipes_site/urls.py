from django.urls import path

from recipes import views

urlpatterns = [
    path("recipes/<int:recipe_id>/remix", views.remix, name="remix"),
]
