"""The sandbox's whole memory: credentials, settings, faults, operations and the call log.

One ``SandboxState`` per Flask app (``app.extensions["sandbox"]``). The server is threaded, so
every read and write goes through ``state.lock`` (re-entrant: provider views hold it while they
advance an operation and render it, which keeps the two consistent). Nothing here sleeps; the
request pipeline in ``sandbox.common`` does the sleeping outside the lock.
"""

from __future__ import annotations

import copy
import itertools
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

PROVIDERS: tuple[str, ...] = (
    "mesa", "google-csr", "bitbucket-dc", "azure-devops", "codearts", "gitlab-mirror", "gitea-mirror",
)
DEFAULT_TOKEN = "sandbox-token"
IAM_CREDENTIAL = "codearts-iam"
DEFAULT_IAM = "sandbox-user:sandbox-password"
CHAOS_TIMEOUT = 3.0

Phase = Literal["queued", "running", "done"]

# Settings every provider understands; ``None`` for seconds means "count polls instead".
COMMON_DEFAULTS: dict[str, Any] = {
    "polls": 2, "queued_polls": 0, "seconds": None, "outcome": "completed", "error": None, "latency": 0.0,
}

# What each provider adds to COMMON_DEFAULTS; a PUT of any other key is refused, so typos show.
PROVIDER_DEFAULTS: dict[str, dict[str, Any]] = {
    "mesa": {
        "refs": [
            {"name": "main", "before": "1" * 40, "after": "2" * 40, "outcome": "updated"},
            {"name": "v1.0.0", "before": None, "after": "3" * 40, "outcome": "updated"},
        ],
    },
    "google-csr": {"pollable": True, "unpollable_status": 404, "token_lifetime": 3600},
    "bitbucket-dc": {
        "available": True, "ahead_refs": [], "diverged_refs": [], "orphaned_refs": [],
        "synchronize": 204, "resync_enabled": True,
    },
    "azure-devops": {"auth_failure": 203, "fork": True},
    "codearts": {"token_lifetime": 86400},
    "gitlab-mirror": {"min_interval": 0.0, "mirror": True, "paused": False, "trigger_status": 200},
    "gitea-mirror": {"mirror": True},
}

_EXTRA_OUTCOMES = {"azure-devops": ("abandoned",), "gitlab-mirror": ("canceled",)}
OUTCOMES: dict[str, tuple[str, ...]] = {
    name: ("completed", "failed", *_EXTRA_OUTCOMES.get(name, ())) for name in PROVIDERS
}

_NUMBER = (int, float)
_PROGRESS = ("polls", "queued_polls", "seconds", "outcome", "error")  # copied into each new Operation
_CHOICES: dict[str, tuple[Any, ...]] = {
    "unpollable_status": (404, 405, 501), "synchronize": (200, 204, 409),
    "auth_failure": (203, 401), "trigger_status": (200, 202),
}


class SettingsError(ValueError):
    """A settings or faults document the sandbox cannot use; the admin API answers 400."""


@dataclass
class Operation:
    """One provider-side sync: it moves queued -> running -> done as it is polled or as time passes.

    The progress settings (polls, queued_polls, seconds, outcome, error) are copied in at creation, so
    changing settings later only affects operations triggered afterwards.
    """

    id: str
    provider: str
    key: str
    polls: int
    queued_polls: int
    seconds: float | None
    outcome: str
    error: str | None
    created_at: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)
    polled: int = 0
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def phase(self) -> Phase:
        if self.finished_at is not None:
            return "done"
        return "running" if self.started_at is not None else "queued"

    @property
    def succeeded(self) -> bool:
        return self.finished_at is not None and self.outcome == "completed"

    @property
    def failed(self) -> bool:
        return self.finished_at is not None and self.outcome != "completed"

    def observe(self, poll: bool = False, now: float | None = None) -> Phase:
        """Bring the phase up to date; ``poll`` counts this look as one of the polls it needs."""
        now = time.time() if now is None else now
        if poll:
            self.polled += 1
        if self.finished_at is not None:
            return "done"
        if self.seconds is not None:
            deadline = self.created_at + self.seconds
            if now >= deadline:
                self.started_at = self.started_at or self.created_at
                self.finished_at = deadline
            elif self.polled and self.started_at is None:
                self.started_at = now
        elif self.polled >= self.polls:
            self.started_at = self.started_at or now
            self.finished_at = now
        elif self.polled > self.queued_polls and self.started_at is None:
            self.started_at = now
        return self.phase

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "phase": self.phase}


@dataclass
class RepoSummary:
    """What a per-repo mirror status shows, from the repo's operations (oldest first)."""

    history: list[Operation]
    latest: Operation | None
    last_started: Operation | None
    last_finished: Operation | None
    last_success: Operation | None
    failures: int  # consecutive failed operations since the last success

    @classmethod
    def of(cls, history: list[Operation]) -> RepoSummary:
        def last(ops: list[Operation]) -> Operation | None:
            return ops[-1] if ops else None

        finished = [op for op in history if op.phase == "done"]
        failures = 0
        for op in reversed(finished):
            if op.succeeded:
                break
            failures += 1
        return cls(history, last(history), last([op for op in history if op.started_at is not None]),
                   last(finished), last([op for op in finished if op.succeeded]), failures)


@dataclass
class MintedToken:
    """An access token a token endpoint handed out, with what it was minted for."""

    token: str
    provider: str
    expires_at: float
    info: dict[str, Any]


class SandboxState:
    """Everything the sandbox remembers, behind one lock."""

    def __init__(self, tokens: dict[str, str] | None = None):
        unknown = set(tokens or {}) - {*PROVIDERS, IAM_CREDENTIAL}
        if unknown:
            raise ValueError(f"unknown provider(s) in tokens: {', '.join(sorted(unknown))}")
        self.lock = threading.RLock()
        self.credentials: dict[str, str] = {name: DEFAULT_TOKEN for name in PROVIDERS}
        self.credentials[IAM_CREDENTIAL] = DEFAULT_IAM
        self.credentials.update(tokens or {})
        self.started_at = time.time()
        # Minted tokens survive a reset: they are credentials a client may have cached.
        self._minted: dict[str, MintedToken] = {}
        self._serial = itertools.count(int(self.started_at) % 1_000_000 * 1000 + 1)
        self.reset()

    def reset(self) -> None:
        """Back to defaults: settings, faults, operations, per-repo state and the call log."""
        with self.lock:
            self._overrides: dict[str, dict[str, Any]] = {name: {} for name in PROVIDERS}
            self._faults: dict[str, deque[dict[str, Any]]] = {name: deque() for name in PROVIDERS}
            self._chaos: dict[str, tuple[float, float, random.Random] | None] = dict.fromkeys(PROVIDERS)
            self._operations: dict[tuple[str, str], Operation] = {}
            self._by_key: dict[tuple[str, str], list[Operation]] = {}
            self._repos: dict[tuple[str, str], dict[str, Any]] = {}
            self._calls: list[dict[str, Any]] = []

    # -- settings -------------------------------------------------------------------------------

    def settings(self, provider: str) -> dict[str, Any]:
        """The provider's effective settings: defaults with the PUT overrides merged over them."""
        with self.lock:
            merged = {**COMMON_DEFAULTS, **PROVIDER_DEFAULTS[provider], **self._overrides[provider]}
            return copy.deepcopy(merged)

    def update_settings(self, provider: str, values: Any) -> dict[str, Any]:
        _check_settings(provider, values)
        with self.lock:
            self._overrides[provider].update(copy.deepcopy(values))
        return self.settings(provider)

    # -- credentials ----------------------------------------------------------------------------

    def mint(self, provider: str, lifetime: float, prefix: str, **info: Any) -> MintedToken:
        """A fresh token the provider's API endpoints will accept until it expires."""
        minted = MintedToken(prefix + secrets.token_hex(24), provider, time.time() + lifetime, info)
        with self.lock:
            self._minted[minted.token] = minted
        return minted

    def token_status(self, provider: str, token: str | None) -> MintedToken | bool:
        """True for the static credential, the MintedToken for a live minted one, else False."""
        if not token:
            return False
        with self.lock:
            if secrets.compare_digest(token.encode(), self.credentials[provider].encode()):
                return True
            minted = self._minted.get(token)
        if minted is None or minted.provider != provider or minted.expires_at <= time.time():
            return False
        return minted

    # -- call log -------------------------------------------------------------------------------

    def record_call(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append at arrival, so the log keeps arrival order; the status is filled in later."""
        with self.lock:
            self._calls.append(entry)
        return entry

    def finish_call(self, entry: dict[str, Any], status: int) -> None:
        with self.lock:
            entry["status"] = status

    def calls(self, provider: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(call) for call in self._calls if provider in (None, call["provider"])]

    def clear_calls(self) -> None:
        with self.lock:
            self._calls.clear()

    # -- faults ---------------------------------------------------------------------------------

    def add_faults(self, provider: str, document: Any) -> dict[str, Any]:
        """Queue ``responses`` and/or set (or, with null, clear) ``chaos`` for a provider."""
        if not isinstance(document, dict) or not {"responses", "chaos"} & set(document):
            raise SettingsError('expected {"responses": [...]} or {"chaos": {"rate": ..., "seed": ...}}')
        responses = document.get("responses", [])
        if not isinstance(responses, list):
            raise SettingsError("responses must be a list")
        for item in responses:
            _check_fault(item)
        chaos = _check_chaos(document["chaos"]) if "chaos" in document else None
        with self.lock:
            self._faults[provider].extend(copy.deepcopy(responses))
            if "chaos" in document:
                self._chaos[provider] = chaos
            return {"queued": len(self._faults[provider]), "chaos": document.get("chaos")}

    def clear_faults(self) -> None:
        with self.lock:
            for name in PROVIDERS:
                self._faults[name].clear()
                self._chaos[name] = None

    def next_fault(self, provider: str) -> dict[str, Any] | None:
        """The next queued fault, else a seeded chaos pick, else None (answer normally)."""
        with self.lock:
            if self._faults[provider]:
                return self._faults[provider].popleft()
            chaos = self._chaos[provider]
            if chaos is None:
                return None
            rate, timeout, rng = chaos
            if rng.random() >= rate:
                return None
            picks = [{"status": 500}, {"status": 429, "retry_after": 1}, {"timeout": timeout}]
            return rng.choice(picks)

    # -- operations and per-repo state -------------------------------------------------------

    def serial(self) -> int:
        """A number no other operation of this sandbox got (Azure's operationId is an int32)."""
        with self.lock:
            return next(self._serial)

    def create_operation(self, provider: str, key: str, op_id: str, instant: bool = False,
                         **data: Any) -> Operation:
        """A new operation on ``key`` (the repo) progressing per the provider's settings right now.

        ``instant`` is for synchronous providers (Bitbucket): done, successfully, on creation.
        """
        settings = self.settings(provider)
        if instant:
            settings.update(polls=0, seconds=None, outcome="completed")
        progress = {name: settings[name] for name in _PROGRESS}
        op = Operation(id=op_id, provider=provider, key=key, data=data, **progress)
        with self.lock:
            op.observe()
            self._operations[(provider, op_id)] = op
            self._by_key.setdefault((provider, key), []).append(op)
        return op

    def operation(self, provider: str, op_id: str) -> Operation | None:
        with self.lock:
            return self._operations.get((provider, op_id))

    def history(self, provider: str, key: str) -> list[Operation]:
        """The operations of one repo, oldest first, each brought up to date (no poll counted)."""
        with self.lock:
            ops = list(self._by_key.get((provider, key), ()))
            for op in ops:
                op.observe()
            return ops

    def poll_latest(self, provider: str, key: str) -> RepoSummary:
        """For providers whose status is per repo (no operation id): a look at the repo's status
        is a poll of its latest operation."""
        with self.lock:
            history = self.history(provider, key)
            if history:
                history[-1].observe(poll=True)
            return RepoSummary.of(history)

    def operations(self, provider: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [op.to_json() for op in self._operations.values() if provider in (None, op.provider)]

    def repo(self, provider: str, key: str, **defaults: Any) -> dict[str, Any]:
        """Mutable per-repo state of a provider (e.g. Bitbucket's enabled flag), made on first use."""
        with self.lock:
            return self._repos.setdefault((provider, key), dict(defaults))


def _check_settings(provider: str, values: Any) -> None:
    if not isinstance(values, dict):
        raise SettingsError("settings must be a JSON object")
    allowed = {**COMMON_DEFAULTS, **PROVIDER_DEFAULTS[provider]}
    unknown = set(values) - set(allowed)
    if unknown:
        raise SettingsError(f"unknown setting(s) for {provider}: {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(sorted(allowed))}")
    for key, value in values.items():
        if key == "outcome" and value not in OUTCOMES[provider]:
            raise SettingsError(f"outcome for {provider} must be one of {', '.join(OUTCOMES[provider])}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise SettingsError(f"{key} must be one of {', '.join(map(str, _CHOICES[key]))}")
        if key in _VALIDATORS and not _VALIDATORS[key][0](value):
            raise SettingsError(f"{key} must be {_VALIDATORS[key][1]}")


def _non_negative(value: Any) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool) and value >= 0


def _count(value: Any) -> bool:
    return isinstance(value, int) and _non_negative(value)


def _ref_ids(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(ref, str) for ref in value)


def _mesa_refs(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(ref, dict) and {"name", "before", "after", "outcome"} <= set(ref) for ref in value)


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


_VALIDATORS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "polls": (_count, "an integer >= 0"),
    "queued_polls": (_count, "an integer >= 0"),
    "seconds": (lambda value: value is None or _non_negative(value), "a number >= 0, or null to count polls"),
    "latency": (_non_negative, "a number >= 0"),
    "min_interval": (_non_negative, "a number >= 0"),
    "token_lifetime": (_non_negative, "a number >= 0"),
    "error": (lambda value: value is None or isinstance(value, str), "a string or null"),
    "refs": (_mesa_refs, "a list of {name, before, after, outcome}"),
    **dict.fromkeys(("ahead_refs", "diverged_refs", "orphaned_refs"),
                    (_ref_ids, "a list of ref ids such as refs/heads/main")),
    **dict.fromkeys(("pollable", "available", "resync_enabled", "mirror", "paused", "fork"),
                    (_flag, "true or false")),
}


def _check_fault(item: Any) -> None:
    if not isinstance(item, dict) or not ({"status", "timeout"} & set(item)):
        raise SettingsError(f"each response needs a status or a timeout: {item!r}")
    if "status" in item and not (isinstance(item["status"], int) and 200 <= item["status"] <= 599):
        raise SettingsError(f"status must be an HTTP status: {item!r}")
    for key in ("timeout", "retry_after"):
        if key in item and not _non_negative(item[key]):
            raise SettingsError(f"{key} must be a number >= 0: {item!r}")


def _check_chaos(chaos: Any) -> tuple[float, float, random.Random] | None:
    if chaos is None:
        return None
    if not isinstance(chaos, dict) or not _non_negative(chaos.get("rate")) or chaos["rate"] > 1:
        raise SettingsError('chaos must be {"rate": 0..1, "seed": int, "timeout": seconds (default 3)}')
    timeout = chaos.get("timeout", CHAOS_TIMEOUT)
    if not _non_negative(timeout):
        raise SettingsError("chaos timeout must be a number >= 0")
    return float(chaos["rate"]), float(timeout), random.Random(chaos.get("seed"))
