"""Group commit: deliveries that arrive during a round trip share the next one, each with its own answer.

The batching itself is tested with a flush that is held open (so who waits is certain, not a matter
of thread timing); the Lua script's handling of a batch runs against the real Redis.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue

from bridge.app import create_app
from bridge.config import Config
from bridge.events import RefUpdate
from bridge.group_commit import GroupCommit
from bridge.queueing import Enqueuer
from bridge.routing import Match
from bridge.store import delivery_key
from tests.conftest import github_headers, mesa_config
from tests.test_hooks import push_body

SANDBOX_URL = "http://127.0.0.1:9"


class HeldFlush:
    """A flush that records each batch and, for the first one, waits until released."""

    def __init__(self, fail_on: int | None = None):
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(10)
        if self.fail_on is not None and self.fail_on in items:
            raise RedisConnectionError("Redis went away")
        return [item * 10 for item in items]


def submit_while_first_is_held(flush: HeldFlush, group: GroupCommit[int, int], others: list[int]
                               ) -> tuple[list[object], list[object]]:
    """Submit 0, wait until its flush is in flight, submit ``others``, then let the flush end."""
    with ThreadPoolExecutor(max_workers=len(others) + 1) as pool:
        first = pool.submit(group.submit, 0)
        assert flush.entered.wait(10)
        rest = [pool.submit(group.submit, item) for item in others]
        while len(group._pending) < len(others):  # all of them queued behind the held flush
            threading.Event().wait(0.01)
        flush.release.set()
        outcomes = []
        for future in [first, *rest]:
            try:
                outcomes.append(future.result(timeout=10))
            except Exception as exc:
                outcomes.append(exc)
    return outcomes[:1], outcomes[1:]


def test_items_arriving_during_a_flush_share_the_next_one_and_each_gets_its_own_result() -> None:
    flush = HeldFlush()
    group: GroupCommit[int, int] = GroupCommit(flush)
    first, rest = submit_while_first_is_held(flush, group, [1, 2, 3, 4, 5])
    assert first == [0] and rest == [10, 20, 30, 40, 50]
    assert flush.batches[0] == [0]
    assert sorted(flush.batches[1]) == [1, 2, 3, 4, 5] and len(flush.batches) == 2


def test_an_idle_submitter_flushes_at_once_alone() -> None:
    batches: list[list[int]] = []
    group: GroupCommit[int, int] = GroupCommit(lambda items: batches.append(items) or items)
    assert [group.submit(n) for n in range(3)] == [0, 1, 2]
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
    assert group.submit(7) == 70  # the next batch is unaffected


def matches(target: str, ref: str, after: str) -> list[Match]:
    return [Match(target, None, RefUpdate(ref, "0" * 40, after))]


@pytest.fixture
def config(write_config: Callable[[str], Config]) -> Config:
    return write_config(mesa_config(SANDBOX_URL))


def test_one_script_call_stores_a_batch_in_order(config: Config, redis: Redis) -> None:
    enqueuer = Enqueuer(redis, config.retention)
    batch = [enqueuer.prepare("github", "acme/widgets", "d-1", matches("widgets-mesa", "refs/heads/main", "1" * 40),
                              config.targets),
             enqueuer.prepare("github", "acme/widgets", "d-2", matches("widgets-mesa", "refs/heads/dev", "2" * 40),
                              config.targets),
             enqueuer.prepare("github", "acme/widgets", "d-1", matches("widgets-mesa", "refs/heads/main", "3" * 40),
                              config.targets)]
    first, joined, again = enqueuer.commit(batch)
    assert (first.seen_before, joined.seen_before, again.seen_before) == (False, False, True)
    assert joined.job_ids == first.job_ids == again.job_ids  # one lane: the second push joined the first job
    [job_id] = first.job_ids
    record = redis.hgetall(f"syncbridge:job:{job_id}")
    assert record[b"pushes"] == b"2" and record[b"ref"] == b"refs/heads/dev" and record[b"after"] == b"2" * 40
    assert Queue("syncbridge", connection=redis).job_ids == [job_id]
    assert redis.hget("syncbridge:metrics:webhooks_received", '{"outcome":"duplicate","source":"github"}') == b"1"


def test_concurrent_pushes_through_the_receiver_are_all_stored_and_answered(config: Config, redis: Redis) -> None:
    app = create_app(config, redis)
    redis.config_resetstat()

    def post(index: int) -> tuple[int, str | None]:
        body = push_body(repo=f"acme/widgets-{index}" if index % 2 else "acme/widgets")
        response = app.test_client().post("/hooks/github", data=body,
                                          headers=github_headers(body, delivery=f"c-{index}"))
        return response.status_code, response.get_json().get("delivery")  # an unrouted push: {"ignored": ...}

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(post, range(200)))
    assert answers == [(202, f"c-{i}") if i % 2 == 0 else (200, None) for i in range(200)]
    stored = {key.decode() for key in redis.scan_iter(match=delivery_key("github", "c-*"))}
    assert stored == {delivery_key("github", f"c-{i}") for i in range(0, 200, 2)}  # odd ones had no route
    evalsha = redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert 1 <= evalsha <= 100


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
