"""Templated targets: one target for a whole organisation, its mirror named after the pushed repository.

A target whose mirror fields (``org``, ``project``, ``repository``, ``repo``) hold ``{owner}``,
``{name}`` or ``{repo}`` serves every repository its routes send it: ``repo:
projects/acme/repos/{name}`` syncs ``projects/acme/repos/widgets`` for a push to ``acme/widgets``.
The name is the full name's last segment and the owner everything before it, so GitLab's
``group/sub/widgets`` has the owner ``group/sub`` and the name ``widgets``.

Each rendered mirror is a mirror of its own (docs/DESIGN.md, "Mirrors and lanes"): its key is
``<target>:<mirror name>``, the mirror name being the target's mirror fields, filled, joined by
``/`` (``acme/widgets`` for Mesa's org and repo). A target that names one mirror keeps its name
as the key. The web side computes a key per push (:class:`MirrorKeys`, cached); the worker
renders the target it calls the provider with (:func:`render`), from the job's repository.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from bridge.config import MIRROR_FIELDS, PLACEHOLDER, TargetBase

T = TypeVar("T", bound=TargetBase)
SEPARATOR = ":"
CACHE_SIZE = 4096  # (target, repository) pairs whose keys the web side keeps; more, and it starts over
# What no mirror name may hold, whatever the host allowed: URL syntax and path tricks.
_UNUSABLE = re.compile(r"[?#%\\\s]|(^|/)\.{0,2}(/|$)")


class UnusableName(ValueError):
    """The pushed repository's name cannot name a mirror (it would change the provider URL's meaning)."""


def parts(repo: str) -> dict[str, str]:
    """The placeholders' values for a repository's full name: owner (before the last ``/``), name, repo."""
    owner, _, name = repo.rpartition("/")
    return {"owner": owner, "name": name, "repo": repo}


def render(target: T, repo: str) -> T:
    """The target as it syncs ``repo``'s mirror: its placeholders filled. A fixed target is returned as is."""
    if not target.templated:
        return target
    if _UNUSABLE.search(repo):
        raise UnusableName(f"the repository name {repo!r} cannot name a mirror (a '.', '..' or empty path "
                           "segment, whitespace, or one of ? # % \\)")
    return target.model_copy(update=_filled(target, repo))


def name(target: TargetBase) -> str:
    """The mirror's name as people read it: the target's mirror fields joined by ``/``."""
    return "/".join(str(value) for field in MIRROR_FIELDS if (value := getattr(target, field, None)) is not None)


def key(target_name: str, target: TargetBase, repo: str) -> str:
    """The mirror key of a push of ``repo`` through the target: what lanes, the running slot and
    ``min_interval`` are kept per (``bridge.store``)."""
    if not target.templated:
        return target_name
    return f"{target_name}{SEPARATOR}{name(target.model_copy(update=_filled(target, repo)))}"


def shown(job: dict[str, Any]) -> str | None:
    """The rendered mirror a job's record names, or None for a target that names one mirror."""
    mirror, target = job.get("mirror") or "", job.get("target") or ""
    prefix = f"{target}{SEPARATOR}"
    return mirror[len(prefix):] if mirror.startswith(prefix) else None


def _filled(target: TargetBase, repo: str) -> dict[str, str]:
    values = parts(repo)
    return {field: PLACEHOLDER.sub(lambda match: values[match.group(1)], getattr(target, field))
            for field in target.templated}


class MirrorKeys:
    """Mirror keys per (target, repository), each rendered once: the edge needs one per push and target.

    A target that names one mirror costs nothing (its name is its key). The cache is bounded: past
    ``size`` pairs it starts over, which costs a few microseconds per pair to refill.
    """

    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self._keys: dict[tuple[str, str], tuple[TargetBase, str]] = {}

    def key(self, target_name: str, target: TargetBase, repo: str) -> str:
        if not target.templated:
            return target_name
        cached = self._keys.get((target_name, repo))
        if cached is not None and cached[0] is target:  # the same config's target, not a reloaded one
            return cached[1]
        if len(self._keys) >= self.size:
            self._keys.clear()
        value = key(target_name, target, repo)
        self._keys[(target_name, repo)] = (target, value)
        return value
