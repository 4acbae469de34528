import socket
import time

from celery import shared_task

from .models import Note


@shared_task(bind=True)
def write_note(self, text: str, delay: float = 0) -> int:
    """Store a row, so the result of the task is visible in the database. `delay` makes a slow
    task (seconds), to show that a warm worker restart lets it finish."""
    if delay:
        time.sleep(min(float(delay), 120))
    note = Note.objects.create(text=text, source=f"celery@{socket.gethostname()}",
                               task_id=self.request.id)
    return note.id
