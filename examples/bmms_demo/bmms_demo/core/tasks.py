import socket

from celery import shared_task

from .models import Note


@shared_task(bind=True)
def write_note(self, text: str) -> int:
    """Store a row, so the result of the task is visible in the database."""
    note = Note.objects.create(text=text, source=f"celery@{socket.gethostname()}",
                               task_id=self.request.id)
    return note.id
