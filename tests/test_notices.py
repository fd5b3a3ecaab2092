"""A limit's log line: at once the first time, then at most one per interval, saying what happened since, counted."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kmem_exporter.web.notices import Notice


def test_a_limit_is_logged_once_then_once_per_interval_with_counts(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("kmem_exporter.test_notices")

    async def scenario() -> None:
        notice = Notice(logger, "limit reached ({open} open)", interval=2.0)
        notice.add("closed to make room", open=5)  # the first time: logged at once
        for _ in range(4):  # within the interval: counted, logged when it ends
            notice.add("closed to make room", open=6)
        notice.add("refused", open=6)
        assert len(caplog.records) == 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(caplog.records) < 2 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert notice.total == 6

    with caplog.at_level(logging.WARNING, logger="kmem_exporter.test_notices"):
        asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records] == [
        "limit reached (5 open); closed to make room: 1",
        "limit reached (6 open); in the last 2s closed to make room: 4; refused: 1",
    ]
