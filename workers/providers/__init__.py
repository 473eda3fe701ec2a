"""One module per provider, all with the same shape (see ``base.Provider``).

Adding a provider is one module, one line below, a target model in ``bridge.config`` and its
contract tests.
"""

from __future__ import annotations

from types import ModuleType

from workers.providers import azure_devops, bitbucket_dc, codearts, gitea_mirror, gitlab_mirror, google_csr, mesa

PROVIDERS: dict[str, ModuleType] = {
    mesa.NAME: mesa,
    google_csr.NAME: google_csr,
    bitbucket_dc.NAME: bitbucket_dc,
    azure_devops.NAME: azure_devops,
    codearts.NAME: codearts,
    gitlab_mirror.NAME: gitlab_mirror,
    gitea_mirror.NAME: gitea_mirror,
}
