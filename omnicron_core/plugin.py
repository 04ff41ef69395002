"""The plugin author's API: everything a third-party executor or store backend imports.

A plugin imports from here, never from a ``_private`` module of the core::

    from omnicron_core.plugin import StoreBackend, StoreBackendSpec, StoreError, hookimpl

Store backends: see ``docs/stores.md``; the conformance kit is
:class:`omnicron_core.testing.StoreBackendContract`.
"""

from __future__ import annotations

from ._backend import JobPatch, StoreBackend
from ._errors import StoreError
from ._plugins import StoreBackendSpec
from .hookspecs import hookimpl

__all__ = ["JobPatch", "StoreBackend", "StoreBackendSpec", "StoreError", "hookimpl"]
