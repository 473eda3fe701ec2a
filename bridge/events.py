"""What a verified webhook means, independent of the host that sent it.

Every host module turns raw bytes into one of these three shapes, so routing, queueing and the
job record never learn a host's payload format.
"""

from __future__ import annotations

from dataclasses import dataclass

ZERO_SHA = "0" * 40  # what hosts send for a missing side of a SHA-1 ref update


@dataclass(frozen=True, slots=True)
class HeaderNames:
    """Where a host puts the event name, its delivery id (first present wins) and its signature or token:
    what the delivery log (``bridge.deliveries``) reads of every request, accepted or not."""

    event: str
    delivery: tuple[str, ...]
    signature: tuple[str, ...]


class Unauthorized(Exception):
    """The request is not provably from the host: missing, malformed or wrong signature/token."""


class BadPayload(Exception):
    """Verified, but not the host's push format (answered 400)."""


class UnsupportedMediaType(Exception):
    """A content type the host never sends (answered 415)."""


@dataclass(frozen=True, slots=True)
class RefUpdate:
    """One ref moving from ``before`` to ``after``; ``after`` all zeros is a deletion."""

    ref: str
    before: str
    after: str

    @property
    def is_deletion(self) -> bool:
        """All zeros, 40 (SHA-1) or 64 (SHA-256) of them: the ref is gone."""
        return set(self.after) == {"0"}

    @property
    def is_tag(self) -> bool:
        return self.ref.startswith("refs/tags/")

    @property
    def is_branch(self) -> bool:
        return self.ref.startswith("refs/heads/")

    @property
    def short_name(self) -> str:
        """The ref without ``refs/heads/`` or ``refs/tags/``, as branch and tag globs see it."""
        for prefix in ("refs/heads/", "refs/tags/"):
            if self.ref.startswith(prefix):
                return self.ref[len(prefix) :]
        return self.ref


@dataclass(frozen=True, slots=True)
class Push:
    """A push of one or more refs (Bitbucket sends several per event) to ``repo``.

    ``delivery`` is the host's delivery id, or None when the host sends none (the receiver
    then uses a digest of the verified body, so a replay is still recognised).
    """

    repo: str
    updates: tuple[RefUpdate, ...]
    delivery: str | None


@dataclass(frozen=True, slots=True)
class Ping:
    """The host checking that the hook works; answered 200, no job."""

    delivery: str | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A verified event that is not a push (issues, pull requests, ...); answered 200, no job."""

    reason: str
    delivery: str | None = None


Event = Push | Ping | Ignored
