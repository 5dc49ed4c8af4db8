"""Celery, as a user would set it up: Redis broker and result backend, prefork pool."""

import os

from celery import Celery

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("bench", broker=URL, backend=URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    result_expires=600,
    worker_prefetch_multiplier=4,  # Celery's default
    task_ignore_result=False,
)


@app.task
def noop():
    return None
