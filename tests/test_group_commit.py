"""Group commit: deliveries that arrive during a round trip share the next one, each with its own answer.

The batching itself is tested with a flush that is held open (so who waits is certain, not a matter
of timing); the Lua script's handling of a batch runs against the real Redis, through the same
connection class the edge uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue

from bridge.app import create_app
from bridge.config import Config
from bridge.connection import AsyncScript
from bridge.events import RefUpdate
from bridge.group_commit import GroupCommit
from bridge.queueing import Enqueuer
from bridge.routing import Match
from tests.conftest import github_headers, mesa_config
from tests.test_hooks import push_body

SANDBOX_URL = "http://127.0.0.1:9"


class HeldFlush:
    """A flush that records each batch and holds the first one open until released."""

    def __init__(self, fail_on: int | None = None):
        self.batches: list[list[int]] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.fail_on = fail_on

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.entered.set()
            await self.release.wait()
        if self.fail_on is not None and self.fail_on in items:
            raise RedisConnectionError("Redis went away")
        return [item * 10 for item in items]


async def _settle(results: list[asyncio.Task[int]]) -> list[Any]:
    outcomes = await asyncio.gather(*results, return_exceptions=True)
    return list(outcomes)


def submit_while_first_is_held(flush: HeldFlush, group: GroupCommit[int, int], others: list[int]
                               ) -> tuple[list[Any], list[Any]]:
    """Submit 0, wait until its flush is in flight, submit ``others``, then let the flush end."""

    async def scenario() -> tuple[list[Any], list[Any]]:
        first = asyncio.create_task(group.submit(0))
        await flush.entered.wait()
        rest = [asyncio.create_task(group.submit(item)) for item in others]
        await asyncio.sleep(0)  # every other submitter has queued behind the held flush
        flush.release.set()
        return await _settle([first]), await _settle(rest)

    return asyncio.run(asyncio.wait_for(scenario(), 10))


def test_items_arriving_during_a_flush_share_the_next_one_and_each_gets_its_own_result() -> None:
    flush = HeldFlush()
    group: GroupCommit[int, int] = GroupCommit(flush)
    first, rest = submit_while_first_is_held(flush, group, [1, 2, 3, 4, 5])
    assert first == [0] and rest == [10, 20, 30, 40, 50]
    assert flush.batches == [[0], [1, 2, 3, 4, 5]]


def test_an_idle_submitter_flushes_at_once_alone() -> None:
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        batches.append(items)
        return items

    async def one_at_a_time() -> list[int]:
        group: GroupCommit[int, int] = GroupCommit(flush)
        return [await group.submit(n) for n in range(3)]

    assert asyncio.run(one_at_a_time()) == [0, 1, 2]
    assert batches == [[0], [1], [2]]


def test_batches_are_bounded() -> None:
    flush = HeldFlush()
    group: GroupCommit[int, int] = GroupCommit(flush, max_batch=2)
    _, rest = submit_while_first_is_held(flush, group, [1, 2, 3, 4, 5])
    assert rest == [10, 20, 30, 40, 50]
    assert [len(batch) for batch in flush.batches] == [1, 2, 2, 1]


def test_an_error_reaches_every_item_of_its_batch_and_no_other() -> None:
    flush = HeldFlush(fail_on=3)
    group: GroupCommit[int, int] = GroupCommit(flush)
    first, rest = submit_while_first_is_held(flush, group, [1, 2, 3])
    assert first == [0]
    assert all(isinstance(outcome, RedisConnectionError) for outcome in rest), rest

    async def next_one() -> int:
        return await group.submit(7)

    assert asyncio.run(next_one()) == 70  # the next batch is unaffected


def test_a_submitter_that_goes_away_strands_nobody_behind_it() -> None:
    """The request that found the group idle is cancelled (its client left) while its flush is in
    flight: the items queued behind it are still flushed and answered."""
    flush = HeldFlush()
    group: GroupCommit[int, int] = GroupCommit(flush)

    async def scenario() -> list[Any]:
        first = asyncio.create_task(group.submit(0))
        await flush.entered.wait()
        rest = [asyncio.create_task(group.submit(item)) for item in (1, 2)]
        await asyncio.sleep(0)
        first.cancel()
        flush.release.set()
        return await _settle(rest)

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [10, 20]
    assert flush.batches == [[0], [1, 2]]


def matches(target: str, ref: str, after: str) -> list[Match]:
    return [Match(target, None, RefUpdate(ref, "0" * 40, after))]


@pytest.fixture
def config(write_config: Callable[[str], Config]) -> Config:
    return write_config(mesa_config(SANDBOX_URL))


def test_one_script_call_stores_a_batch_in_order(config: Config, redis: Redis, redis_server: Any) -> None:
    """A batch through the edge's own path: ``Enqueuer.pack``, one script call on ``AsyncScript``'s
    connection, one receipt per delivery; a redelivery in the batch is answered with its jobs."""
    enqueuer = Enqueuer(redis, config.retention)
    batch = [enqueuer.prepare("github", "acme/widgets", "d-1", matches("widgets-mesa", "refs/heads/main", "1" * 40),
                              config.targets),
             enqueuer.prepare("github", "acme/widgets", "d-2", matches("widgets-mesa", "refs/heads/dev", "2" * 40),
                              config.targets),
             enqueuer.prepare("github", "acme/widgets", "d-1", matches("widgets-mesa", "refs/heads/main", "3" * 40),
                              config.targets)]
    redis.script_load(enqueuer.script.script)
    redis.config_resetstat()

    async def store() -> list[Any]:
        script = AsyncScript(enqueuer.script, redis_server.url)
        keys, args = enqueuer.pack(batch)
        try:
            return Enqueuer.receipts(batch, await script(keys, args))
        finally:
            await script.close()

    first, joined, again = asyncio.run(store())
    assert redis.info("commandstats")["cmdstat_evalsha"]["calls"] == 1
    assert (first.seen_before, joined.seen_before, again.seen_before) == (False, False, True)
    assert joined.job_ids == first.job_ids == again.job_ids  # one lane: the second push joined the first job
    [job_id] = first.job_ids
    assert again.seen == ((job_id, "widgets-mesa", "queued"),)  # the redelivery's answer, from the same call
    record = redis.hgetall(f"syncbridge:job:{job_id}")
    assert record[b"pushes"] == b"2" and record[b"ref"] == b"refs/heads/dev" and record[b"after"] == b"2" * 40
    assert Queue("syncbridge", connection=redis).job_ids == [job_id]
    assert redis.hget("syncbridge:metrics:webhooks_received", '{"outcome":"duplicate","source":"github"}') == b"1"


def test_a_line_is_logged_per_job_queued_and_a_burst_that_joins_it_logs_at_debug(
        config: Config, redis: Redis, caplog: pytest.LogCaptureFixture) -> None:
    client = create_app(config, redis).test_client()
    caplog.set_level("DEBUG", logger="syncbridge.hooks")
    for index in range(5):
        body = push_body(after=str(index) * 40)
        assert client.post("/hooks/github", data=body, headers=github_headers(body, delivery=f"b-{index}")
                           ).status_code == 202
    lines = [(record.levelname, record.getMessage()) for record in caplog.records if record.name == "syncbridge.hooks"]
    assert [level for level, _ in lines] == ["INFO", "DEBUG", "DEBUG", "DEBUG", "DEBUG"]
    assert lines[0][1].startswith("delivery=b-0 source=github repo=acme/widgets jobs=")
    assert all(message.endswith("(joined)") for _, message in lines[1:])
