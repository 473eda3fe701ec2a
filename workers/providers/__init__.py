"""One module per provider, all with the same shape (see ``base.Provider``).

Adding a provider is one module, one line below, a target model in ``bridge.config`` and its
contract tests.
"""

from __future__ import annotations

from types import ModuleType

from workers.providers import mesa

PROVIDERS: dict[str, ModuleType] = {
    mesa.NAME: mesa,
}
