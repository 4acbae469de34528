from django.contrib import admin
from django.urls import path

from .core import views

urlpatterns = [
    path("health/", views.health),
    path("ready/", views.ready),
    path("version/", views.version),
    path("metrics/", views.metrics),
    path("api/notes/", views.notes),
    path("api/tasks/", views.start_task),
    path("api/tasks/<str:task_id>/", views.task_result),
    path("accounts/login/", views.login_stub),
    path("admin/", admin.site.urls),
]
