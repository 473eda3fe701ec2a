"""Prometheus metrics kept in Redis, so every process and every machine adds to the same counts.

prometheus-client's multiprocess mode only adds up processes that share a directory; a web dyno
and a worker dyno share nothing but Redis. So counters and histogram buckets are Redis hashes
(one field per label set), and ``/metrics`` renders them with a custom collector at scrape time,
together with the queue depths read from RQ's own keys.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError

from bridge.store import LAST_FAILURE_KEY, LAST_SUCCESS_KEY, NEXT_RECONCILE_KEY, PREFIX, SWEEPS_KEY, epoch

log = logging.getLogger("syncbridge.metrics")
BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))
COUNTERS = {
    "webhooks_received": ("Webhook deliveries received, by source and outcome", ("source", "outcome")),
    "jobs_finished": ("Sync jobs ended, by target and final status", ("target", "status")),
    "retries": ("Provider calls retried after a transient failure", ("target", "provider")),
    "notifications": ("Chat/HTTP notifications sent, by outcome", ("outcome",)),
    "deliveries_unlogged": ("Deliveries left out of the delivery log: a web process's buffer was full", ()),
}
HISTOGRAMS = {
    "sync_duration_seconds": ("Time from a sync's start to its end, by provider and target", ("provider", "target")),
}


def key(name: str) -> str:
    return f"{PREFIX}:metrics:{name}"


def field(**labels: str) -> str:
    """The hash field for one label set."""
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def count(redis: Redis | Pipeline, name: str, **labels: str) -> None:
    """Add one to counter ``name``; on a pipeline it rides along with the caller's round trip."""
    redis.hincrby(key(name), field(**labels), 1)


def count_best_effort(redis: Redis, name: str, **labels: str) -> None:
    """Count, but never fail the caller: a metric is not worth an error answer."""
    try:
        count(redis, name, **labels)
    except RedisError as exc:
        log.debug("metric %s not counted: %s", name, exc)


def add(pipe: Pipeline, name: str, counts: dict[str, int]) -> None:
    """Add many counts at once (label field -> n) to counter ``name``, riding on the caller's pipeline."""
    for label_field, n in counts.items():
        pipe.hincrby(key(name), label_field, n)


def observe(redis: Redis, name: str, value: float, **labels: str) -> None:
    """Record ``value`` in histogram ``name`` (cumulative buckets, sum and count)."""
    label_field = field(**labels)
    pipe = redis.pipeline(transaction=False)
    for bound in BUCKETS:
        if value <= bound:
            pipe.hincrby(key(f"{name}:bucket:{bound}"), label_field, 1)
    pipe.hincrbyfloat(key(f"{name}:sum"), label_field, value)
    pipe.hincrby(key(f"{name}:count"), label_field, 1)
    pipe.execute()


class RedisCollector(Collector):
    """Renders the Redis-kept metrics and RQ's queue depths at scrape time."""

    def __init__(self, redis: Redis, queues: tuple[str, ...]):
        self.redis = redis
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        for name, (doc, labels) in COUNTERS.items():
            family = CounterMetricFamily(f"syncbridge_{name}", doc, labels=list(labels))
            for label_field, value in self.redis.hgetall(key(name)).items():
                values = json.loads(label_field)
                family.add_metric([values.get(label, "") for label in labels], float(value))
            yield family
        for name, (doc, labels) in HISTOGRAMS.items():
            yield self._histogram(name, doc, labels)
        depth = GaugeMetricFamily("syncbridge_queue_depth", "Jobs waiting, by queue and state",
                                  labels=["queue", "state"])
        for queue in self.queues:
            pipe = self.redis.pipeline(transaction=False)
            pipe.llen(f"rq:queue:{queue}")
            pipe.zcard(f"rq:scheduled:{queue}")
            pipe.zcard(f"rq:wip:{queue}")
            queued, scheduled, started = pipe.execute()
            depth.add_metric([queue, "queued"], queued)
            depth.add_metric([queue, "scheduled"], scheduled)
            depth.add_metric([queue, "started"], started)
        yield depth
        yield from self._targets()
        yield from self._periodic()

    def _targets(self) -> Iterator[Metric]:
        """When each target's newest sync ended completed, and failed: alert on time since the last success."""
        for outcome, hash_key in (("success", LAST_SUCCESS_KEY), ("failure", LAST_FAILURE_KEY)):
            family = GaugeMetricFamily(f"syncbridge_target_last_{outcome}_timestamp_seconds",
                                       f"When the target's newest {'completed' if outcome == 'success' else 'failed'}"
                                       " sync ended (Unix time)", labels=["target"])
            for target, value in self.redis.hgetall(hash_key).items():
                family.add_metric([target.decode()], epoch(json.loads(value)["at"]))
            yield family

    def _periodic(self) -> Iterator[Metric]:
        """The last redelivery sweep per source, and when each target's next reconcile is due."""
        sweep = GaugeMetricFamily("syncbridge_sweep_last", "The last redelivery sweep's counts, by source",
                                  labels=["source", "count"])
        swept_at = GaugeMetricFamily("syncbridge_sweep_last_timestamp_seconds", "When the last sweep ran",
                                     labels=["source"])
        for source, report in self.redis.hgetall(SWEEPS_KEY).items():
            values = json.loads(report)
            for count in ("listed", "found", "redelivered", "failed"):
                sweep.add_metric([source.decode(), count], values[count])
            swept_at.add_metric([source.decode()], values["at"])
        reconcile = GaugeMetricFamily("syncbridge_reconcile_next_timestamp_seconds",
                                      "When each target's next reconcile sync is due", labels=["target"])
        for target, when in self.redis.hgetall(NEXT_RECONCILE_KEY).items():
            reconcile.add_metric([target.decode()], float(when))
        yield from (sweep, swept_at, reconcile)

    def _histogram(self, name: str, doc: str, labels: tuple[str, ...]) -> Metric:
        family = HistogramMetricFamily(f"syncbridge_{name}", doc, labels=list(labels))
        sums = self.redis.hgetall(key(f"{name}:sum"))
        buckets = {bound: self.redis.hgetall(key(f"{name}:bucket:{bound}")) for bound in BUCKETS}
        for label_field, total in sums.items():
            values = json.loads(label_field)
            family.add_metric(
                [values.get(label, "") for label in labels],
                [("+Inf" if bound == float("inf") else str(bound), float(buckets[bound].get(label_field, 0)))
                 for bound in BUCKETS],
                float(total),
            )
        return family
