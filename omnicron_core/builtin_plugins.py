"""The plugin that ships inside omnicron-core: the ``memory://`` and ``sqlite://`` stores."""

from __future__ import annotations

from collections.abc import Iterable

from ._backend import StoreBackendSpec
from .hookspecs import hookimpl


@hookimpl
def omnicron_store_backends() -> Iterable[StoreBackendSpec]:
    from .backends.memory import MemoryBackend
    from .backends.sqlite import SQLiteBackend

    return [
        StoreBackendSpec("memory", MemoryBackend.from_url, "in-process, lost at exit"),
        StoreBackendSpec("sqlite", SQLiteBackend.from_url, "embedded SQLite file (WAL)"),
    ]
