"""One module per Git host, all with the same two functions.

``verify(headers, body, secrets)`` raises :class:`bridge.events.Unauthorized`;
``parse(headers, body)`` returns a Push, Ping or Ignored, or raises BadPayload /
UnsupportedMediaType; ``HEADERS`` names where the host puts its event, delivery id and signature
(what the delivery log shows of every request). Adding a host is one module and one line below.
"""

from __future__ import annotations

from types import ModuleType

from bridge.sources import bitbucket_cloud, bitbucket_server, forgejo, gitea, github, gitlab

SOURCES: dict[str, ModuleType] = {
    github.KIND: github,
    gitlab.KIND: gitlab,
    gitea.KIND: gitea,
    forgejo.KIND: forgejo,
    bitbucket_server.KIND: bitbucket_server,
    bitbucket_cloud.KIND: bitbucket_cloud,
}
