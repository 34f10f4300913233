"""The per-request deadline every inference route runs under (`request_timeout_s`, 504 past it).

It covers reading the body too: a client that uploads slowly uses up its own time, not a worker's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service.errors import DeadlineExceeded
from service.settings import Settings


@asynccontextmanager
async def deadline(settings: Settings) -> AsyncIterator[None]:
    timeout = settings.request_timeout_s
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError as error:
        raise DeadlineExceeded(f"no answer within request_timeout_s={timeout}") from error
