"""Huey, as a user would set it up: RedisHuey with results stored."""

import os
from urllib.parse import urlparse

from huey import RedisHuey

_url = urlparse(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
# store_none: a no-op returns None, and Huey otherwise stores no result to wait for.
huey = RedisHuey("bench", host=_url.hostname, port=_url.port, db=int(_url.path[1:] or 0),
                 store_none=True)


@huey.task()
def noop():
    return None
