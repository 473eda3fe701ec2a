"""What every provider shares: the Remote result, error classes and the one HTTP layer.

A provider module never sleeps and never loops: each call is one HTTP request, and the job in
``workers.jobs`` decides whether to poll again, back off or give up. That keeps a thousand
operations in flight from holding a thousand workers.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import requests

from bridge import __version__, redact
from bridge.config import TargetBase

State = Literal["running", "completed", "failed"]
CONNECT_TIMEOUT = 5.0
USER_AGENT = f"syncbridge/{__version__} (+https://github.com/syncbridge/syncbridge)"


@dataclass
class Remote:
    """The provider's operation as last seen: its id, its own status word, and what it means.

    ``retry_after``: poll again no sooner than that many seconds from now (Azure DevOps'
    ``Retry-After`` on a 200, GitLab's minimum pull interval); advice for the next poll, not stored.
    """

    id: str | None
    status: str
    state: State = "running"
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The job's ``remote`` field: id and provider status first, then provider details."""
        return {"id": self.id, "status": self.status, **self.details}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Remote:
        details = {key: value for key, value in data.items() if key not in ("id", "status")}
        return cls(id=data.get("id"), status=data.get("status", ""), details=details)


class ProviderError(Exception):
    """A provider call that did not succeed; ``reason`` is one line, fit for a user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Transient(ProviderError):
    """Worth retrying later: network trouble, a timeout, 429 or 5xx (``retry_after`` when told)."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class Permanent(ProviderError):
    """Retrying cannot help (400/401/403/404, a refused request): the job fails at once."""


class Provider(Protocol):
    """The shape of a ``workers.providers.<name>`` module."""

    NAME: str

    def trigger(self, target: Any, job: dict[str, Any], http: Http) -> Remote: ...
    def poll(self, target: Any, job: dict[str, Any], remote: Remote, http: Http) -> Remote: ...
    def check(self, target: Any, http: Http) -> None: ...


class Http:
    """One requests session per target: timeouts, and every answer classified.

    ``request`` returns the response when its status is one of ``ok``; otherwise it raises
    Transient (connection errors, timeouts, 429, 5xx) or Permanent (any other status), with
    the provider's own error message turned into one line.
    """

    def __init__(self, target: TargetBase, provider: str):
        self.provider = provider
        self.timeout = (min(CONNECT_TIMEOUT, target.request_timeout), min(target.request_timeout, target.timeout))
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT

    def request(self, method: str, url: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> requests.Response:
        where = f"{method} {_path(url)}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.Timeout:
            raise Transient(f"{self.provider}: {where} timed out") from None
        except requests.ConnectionError as exc:
            raise Transient(f"{self.provider}: {where} could not connect ({_root_cause(exc)})") from None
        if response.status_code in ok:
            return response
        reason = f"{self.provider} answered {response.status_code} to {where}: {describe_error(response)}"
        if response.status_code == 429 or response.status_code >= 500:
            raise Transient(reason, retry_after=retry_after(response))
        raise Permanent(reason)


def json_body(response: requests.Response, provider: str) -> Any:
    """The answer's JSON, or Transient: a half-written answer is worth asking for again."""
    try:
        return response.json()
    except ValueError:
        raise Transient(f"{provider} answered {response.status_code} with a body that is not JSON") from None


def retry_after(response: requests.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), if any."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def describe_error(response: requests.Response) -> str:
    """The provider's own error message in one line, whatever shape its error body has.

    Scrubbed before it is cut to length: a secret the provider quoted back and the cut went
    through would no longer match, and half of it would be stored and shown.
    """
    text = response.text or ""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    message = _message_from(data) if data is not None else None
    if message is None:
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        message = f"an HTML page ({title.group(1).strip()})" if title else (text or response.reason or "no body")
    return _one_line(redact.scrub(message))


def _message_from(data: Any) -> str | None:
    """Known error shapes: Mesa/Google ``error{message}``, Bitbucket ``errors[]``, Huawei, GitLab..."""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            trace = error.get("trace_id")
            return str(error["message"]) + (f" (trace_id {trace})" if trace else "")
        if isinstance(data.get("errors"), list) and data["errors"]:
            return "; ".join(str(item.get("message", item)) if isinstance(item, dict) else str(item)
                             for item in data["errors"])
        for key in ("error_msg", "message", "errorMessage", "error_description", "error"):
            if data.get(key):
                value = data[key]
                return value if isinstance(value, str) else json.dumps(value)
    return None


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url) or "/"


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return type(exc).__name__
