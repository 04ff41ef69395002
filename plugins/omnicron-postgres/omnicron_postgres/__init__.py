"""omnicron-postgres: several omnicron scheduler nodes on one PostgreSQL database, each
scheduled fire run once (``postgresql://`` and ``postgres://`` store URLs).

See ``docs/deployment.md`` for running it and :mod:`omnicron_postgres.backend` for how.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from omnicron_core.plugin import StoreBackendSpec, hookimpl

from ._settings import redact
from .backend import PostgresBackend

__all__ = ["PostgresBackend", "redact"]


def _factory(url: str, options: Mapping[str, Any]) -> PostgresBackend:
    return PostgresBackend.from_url(url, options)


@hookimpl
def omnicron_store_backends() -> Iterable[StoreBackendSpec]:
    description = "PostgreSQL: several scheduler nodes share the jobs; each fire runs once"
    return [
        StoreBackendSpec("postgresql", _factory, description),
        StoreBackendSpec("postgres", _factory, description),
    ]
