from django.db import models


class Note(models.Model):
    """A row written through the web (POST /api/notes/) or by a Celery task."""

    text = models.CharField(max_length=500)
    source = models.CharField(max_length=20, default="web")
    task_id = models.CharField(max_length=64, blank=True, db_index=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
