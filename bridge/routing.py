"""Which targets a push goes to: routes matched by source, repo glob, and branch or tag globs."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config import Config, Route
from bridge.events import Push, RefUpdate
from bridge.globs import matches


@dataclass(frozen=True, slots=True)
class Match:
    """One target to sync: the ref filter of the route that chose it and the ref that matched.

    A reconcile sync has no push behind it: no ref, and no filter (it syncs everything).
    """

    target: str
    refs: dict[str, list[str] | None] | None
    update: RefUpdate | None


def route_push(config: Config, source: str, push: Push) -> list[Match]:
    """One Match per target, in config order; of several matching refs, the push's last one wins.

    Repository names compare case-insensitively (hosts treat them so); refs compare exactly.
    A branch is filtered by ``branches``, a tag by ``tags``; an omitted list takes every ref of
    its kind and an empty list none. Other refs (notes, pull refs) only reach unfiltered routes.
    """
    chosen: dict[str, tuple[Route, Match]] = {}
    for update in push.updates:
        for route in config.routes:
            if route.source != source or not matches([route.repo], push.repo, ignore_case=True):
                continue
            if not _ref_allowed(route, update):
                continue
            for target in route.targets:
                if target not in chosen or chosen[target][0] is route:
                    chosen[target] = (route, Match(target, route.ref_filter, update))
    return [match for _, match in chosen.values()]


def _ref_allowed(route: Route, update: RefUpdate) -> bool:
    if update.is_branch:
        return matches(route.branches, update.short_name)
    if update.is_tag:
        return matches(route.tags, update.short_name)
    return route.ref_filter is None
