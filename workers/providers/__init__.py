"""One module per provider, all with the same shape (see ``base.Provider``).

Adding a provider is one module (named after the provider, ``-`` written ``_``), its name in
``bridge.config.PROVIDERS``, a target model in ``bridge.config`` and its contract tests.

A provider's module is imported on first use: its libraries (google-auth for Google CSR) load only
in a worker that syncs one of its targets (docs/RELIABILITY.md, "Worker memory").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import import_module
from types import ModuleType

from bridge.config import PROVIDERS as NAMES


class _Providers(Mapping[str, ModuleType]):
    """Provider name -> its module, imported when first asked for."""

    def __getitem__(self, name: str) -> ModuleType:
        if name not in NAMES:
            raise KeyError(name)
        return import_module(f"{__name__}.{name.replace('-', '_')}")

    def __iter__(self) -> Iterator[str]:
        return iter(NAMES)

    def __len__(self) -> int:
        return len(NAMES)


PROVIDERS: Mapping[str, ModuleType] = _Providers()
