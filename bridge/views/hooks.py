"""``POST /hooks/<source>`` as a Flask view: for WSGI servers and the test client.

``syncbridge web`` answers this route on its event-loop edge (:mod:`bridge.receiver`) before
Flask sees it; this view gives the same answers from the same :class:`bridge.hooks.Hooks`,
storing each delivery in a script call of its own, and writes its entry in the delivery log
(``bridge.deliveries``) at once rather than once a second as the edge does.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, request
from redis.exceptions import RedisError

from bridge import metrics
from bridge.app import current
from bridge.hooks import REDIS_DOWN_ANSWER, Accepted, Answer
from bridge.queueing import Receipt
from bridge.views.auth import public

bp = Blueprint("hooks", __name__)
logger = logging.getLogger("syncbridge.hooks")


@bp.route("/hooks/<source>", methods=["GET", "POST"])
@public  # each delivery proves itself with its signature
def receive(source: str) -> Response:
    if request.method != "POST":
        return _json(Answer(405, {"error": "webhooks are POSTed"}, (("Allow", "POST"),)))
    bridge = current()
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    body = _read_body(limit)
    if body is None:
        return _json(_logged(source, Answer(413, {"error": f"the body is over {limit} bytes"},
                                            (("Connection", "close"),))))
    result = bridge.hooks.check(source, request.headers, body)
    if isinstance(result, Accepted):
        try:
            receipt = bridge.enqueuer.commit([result.delivery])[0]
        except RedisError:
            _logged(source, REDIS_DOWN_ANSWER, result)
            raise  # the app's handler answers 503
        return _json(_logged(source, bridge.hooks.answer(result, receipt, request.url_root + "jobs/"), result,
                             receipt))
    if result.outcome is not None:
        metrics.count_best_effort(bridge.redis, "webhooks_received", source=source, outcome=result.outcome)
    return _json(_logged(source, result))


def _logged(source: str, answer: Answer, accepted: Accepted | None = None, receipt: Receipt | None = None) -> Answer:
    """Write the delivery's entry in the delivery log now (best effort: the answer stands without it)."""
    log = current().deliveries
    pipe = current().redis.pipeline(transaction=False)
    log.write(pipe, [log.entry(source, request.headers, answer, accepted, receipt)])
    try:
        pipe.execute()
    except RedisError as exc:
        logger.debug("delivery log not written: %s", exc)
    return answer


def _read_body(limit: int) -> bytes | None:
    """The raw body, or None when it is over ``limit``: refused by its Content-Length before it is
    read, or counted while a chunked one is read (werkzeug's own limit would cut such a body at the
    limit and hand on the part, which then fails its signature: a misleading 401)."""
    if request.content_length is not None:
        return None if request.content_length > limit else request.get_data(cache=False)
    if not request.environ.get("wsgi.input_terminated"):  # no length and no end: PEP 3333 says no body
        return b""
    raw = request.environ["wsgi.input"].read(limit + 1)
    return None if len(raw) > limit else raw


def _json(answer: Answer) -> Response:
    response = jsonify(answer.body)
    response.status_code = answer.status
    response.headers.extend(answer.headers)
    return response
