"""Which targets a push goes to: routes matched by source, repo glob, and branch or tag globs."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config import Config, Route
from bridge.events import Push, RefUpdate
from bridge.globs import matches


@dataclass(frozen=True, slots=True)
class Match:
    """One target a push must sync, with the route that chose it and the ref that matched."""

    target: str
    route: Route
    update: RefUpdate


def route_push(config: Config, source: str, push: Push) -> list[Match]:
    """One Match per target, in config order; of several matching refs, the push's last one wins.

    Repository names compare case-insensitively (hosts treat them so); refs compare exactly.
    A branch is filtered by ``branches``, a tag by ``tags``; an omitted list takes every ref of
    its kind and an empty list none. Other refs (notes, pull refs) only reach unfiltered routes.
    """
    chosen: dict[str, Match] = {}
    for update in push.updates:
        for route in config.routes:
            if route.source != source or not matches([route.repo], push.repo, ignore_case=True):
                continue
            if not _ref_allowed(route, update):
                continue
            for target in route.targets:
                if target not in chosen or chosen[target].route is route:
                    chosen[target] = Match(target, route, update)
    return list(chosen.values())


def _ref_allowed(route: Route, update: RefUpdate) -> bool:
    if update.is_branch:
        return matches(route.branches, update.short_name)
    if update.is_tag:
        return matches(route.tags, update.short_name)
    return route.ref_filter is None
