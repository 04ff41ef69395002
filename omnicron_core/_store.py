"""The Store facade: the original's method names over a backend chosen by URL scheme."""

from __future__ import annotations

import builtins
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from ._backend import JobPatch, StoreBackend
from ._errors import JobNotFoundError, StoreError
from ._models import ExecutionResult, Job, JobStatus, decode_job, fast_encode
from ._plugins import Registry
from ._runs import RunOutcome, RunRecord, RunWrites

if TYPE_CHECKING:
    from ._plugins import StoreBackendSpec

__all__ = [
    "DEFAULT_STORE_URL",
    "Store",
    "StoreConfig",
    "backend_spec_for",
    "check_store_url",
    "make_backend",
]

DEFAULT_STORE_URL = "sqlite:///omnicron.db"


def check_store_url(url: str) -> None:
    """Refuse a store URL holding a control character (a NUL would pass the URL parsers and
    crash the file system calls later). Raises :class:`StoreError` naming the character."""
    for index, char in enumerate(url):
        if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F:
            raise StoreError(
                f"store URL contains the control character {char!r} at position {index}"
            )


def backend_spec_for(url: str, specs: Mapping[str, StoreBackendSpec]) -> StoreBackendSpec:
    """The registration whose scheme ``url`` names (the one scheme lookup of omnicron), or a
    :class:`StoreError` listing the installed schemes."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    spec = specs.get(scheme)
    if spec is None:
        known = ", ".join(f"{s}://" for s in sorted(specs)) or "none"
        what = f"scheme {scheme!r}" if scheme else "no scheme"
        raise StoreError(f"no store backend for URL {url!r} ({what}); installed schemes: {known}")
    return spec


def make_backend(
    url: str, options: Mapping[str, Any] | None = None, registry: Registry | None = None
) -> StoreBackend:
    """Build (not open) the backend for ``url`` from the installed plugins. Factories only
    parse the URL and options, so this has no side effects (``omnicron validate`` calls it)."""
    check_store_url(url)
    specs = (registry or Registry()).backends
    return backend_spec_for(url, specs).factory(url, dict(options or {}))


class StoreConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which backend to use (by URL scheme) and how big the read cache may grow."""

    url: str = DEFAULT_STORE_URL
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    cache_size: int = 10_000


class Store:
    """Jobs by id, with a write-through read cache.

    The cache holds encoded jobs, so every ``get`` returns a fresh object: a caller's later
    mutation can never reach the cache or another caller (the original handed out shared
    pointers). As in the original, the cache answers ``get`` for a job deleted behind its back
    until :meth:`clear_cache`.
    """

    def __init__(
        self,
        config: StoreConfig | None = None,
        *,
        backend: StoreBackend | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.config = config or StoreConfig()
        self._registry = registry
        self._backend = backend
        self._opened = False
        self._cache: OrderedDict[str, bytes] = OrderedDict()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Store:
        return cls(StoreConfig(url=url, options=options))

    @property
    def backend(self) -> StoreBackend:
        if self._backend is None:
            self._backend = self._make_backend()
        return self._backend

    def _make_backend(self) -> StoreBackend:
        return make_backend(self.config.url, self.config.options, self._registry)

    async def open(self) -> None:
        if not self._opened:
            await self.backend.open()
            self._opened = True

    async def _b(self) -> StoreBackend:
        if not self._opened:
            await self.open()
        return self.backend

    # -- cache --------------------------------------------------------------------------

    def _remember(self, job_id: str, data: bytes) -> None:
        if self.backend.shared:
            return  # other nodes change these jobs: a cached copy would go stale
        cache = self._cache
        cache[job_id] = data
        cache.move_to_end(job_id)
        if len(cache) > self.config.cache_size:
            cache.popitem(last=False)

    def _forget(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            self._cache.pop(job_id, None)

    def clear_cache(self) -> None:
        """Drop every cached job; the backend is untouched."""
        self._cache.clear()

    # -- the original's methods ---------------------------------------------------------

    async def save(self, job: Job) -> None:
        """Insert or replace a job (no validation: the Scheduler validates). Durable on return."""
        backend = await self._b()
        await backend.save(job)
        self._remember(job.id, fast_encode(job))

    async def save_many(self, jobs: Sequence[Job]) -> None:
        backend = await self._b()
        await backend.save_many(jobs)
        self._forget([j.id for j in jobs])

    async def get(self, job_id: str) -> Job:
        """The job, as a fresh object; :class:`JobNotFoundError` if there is none."""
        data = self._cache.get(job_id)
        if data is not None:
            return decode_job(data)
        backend = await self._b()
        job = await backend.get(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        self._remember(job_id, fast_encode(job))
        return job

    async def delete(self, job_id: str) -> None:
        """Remove a job; an unknown id is not an error."""
        backend = await self._b()
        await backend.delete(job_id)
        self._cache.pop(job_id, None)

    async def list(self) -> builtins.list[Job]:
        """Every job, ordered by id."""
        return await (await self._b()).list()

    async def list_by_metadata(self, key: str, value: str) -> builtins.list[Job]:
        """Jobs whose ``metadata[key] == value``, ordered by id."""
        return await (await self._b()).list_by_metadata(key, value)

    async def list_by_status(self, status: JobStatus | str) -> builtins.list[Job]:
        return await (await self._b()).list(JobStatus(status))

    async def list_enabled(self) -> builtins.list[Job]:
        return await self.list_by_status(JobStatus.ENABLED)

    async def count(self, status: JobStatus | str | None = None) -> int:
        return await (await self._b()).count(None if status is None else JobStatus(status))

    async def close(self) -> None:
        if self._backend is not None and self._opened:
            await self._backend.close()
        self._opened = False
        self._cache.clear()

    # -- the Scheduler's path -----------------------------------------------------------

    @property
    def keeps_history(self) -> bool:
        return self.backend.keeps_history

    async def claim_due(
        self,
        now: datetime,
        limit: int,
        mark: Callable[[Job], Job],
        *,
        owner: str = "",
        runs: RunWrites | None = None,
    ) -> builtins.list[Job]:
        backend = await self._b()
        if runs is not None and backend.keeps_history:
            jobs = await backend.claim_due(now, limit, mark, owner=owner, runs=runs)
        else:
            jobs = await backend.claim_due(now, limit, mark, owner=owner)
        if self._cache:
            self._forget([j.id for j in jobs])
        return jobs

    async def update_many(
        self, job_ids: Sequence[str], patch: JobPatch, *, runs: RunWrites | None = None
    ) -> builtins.list[Job]:
        backend = await self._b()
        if runs is not None and backend.keeps_history:
            jobs = await backend.update_many(job_ids, patch, runs=runs)
        else:
            jobs = await backend.update_many(job_ids, patch)
        if self._cache:
            self._forget(job_ids)
        return jobs

    async def update(
        self, job_id: str, patch: JobPatch, *, runs: RunWrites | None = None
    ) -> Job | None:
        done = await self.update_many([job_id], patch, runs=runs)
        return done[0] if done else None

    # -- run history ----------------------------------------------------------------------

    async def write_runs(self, runs: RunWrites) -> None:
        backend = await self._b()
        if backend.keeps_history and not runs.empty:
            await backend.write_runs(runs)

    async def history(
        self,
        job_id: str,
        *,
        limit: int = 20,
        before: int | None = None,
        outcome: RunOutcome | str | None = None,
    ) -> builtins.list[RunRecord]:
        """The job's run records, newest first (see :meth:`StoreBackend.history`)."""
        return await (await self._b()).history(
            job_id,
            limit=limit,
            before=before,
            outcome=None if outcome is None else RunOutcome(outcome),
        )

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await (await self._b()).get_run(run_id)

    async def count_runs(self, job_id: str | None = None) -> int:
        return await (await self._b()).count_runs(job_id)

    async def running_runs(self, limit: int, *, owner: str = "") -> builtins.list[RunRecord]:
        backend = await self._b()
        if not backend.keeps_history:
            return []
        return await backend.running_runs(limit, owner=owner)

    async def prune_runs(
        self,
        *,
        job_ids: Sequence[str] = (),
        keep_last: int | None = None,
        older_than: datetime | None = None,
        limit: int = 1000,
    ) -> int:
        backend = await self._b()
        if not backend.keeps_history:
            return 0
        return await backend.prune_runs(
            job_ids=job_ids, keep_last=keep_last, older_than=older_than, limit=limit
        )

    async def next_due_at(self) -> datetime | None:
        return await (await self._b()).next_due_at()

    async def unscheduled(self, limit: int) -> builtins.list[Job]:
        return await (await self._b()).unscheduled(limit)

    async def recover_running(self, *, owner: str = "") -> builtins.list[str]:
        return await (await self._b()).recover_running(owner=owner)

    async def now(self) -> datetime:
        """The current time by the backend's clock (a shared database's, for example)."""
        return await (await self._b()).now()

    async def finish_runs(
        self,
        job_ids: Sequence[str],
        patch: JobPatch,
        results: Mapping[str, Sequence[ExecutionResult]],
        *,
        runs: RunWrites | None = None,
    ) -> builtins.list[Job]:
        backend = await self._b()
        if runs is not None and backend.keeps_history:
            jobs = await backend.finish_runs(job_ids, patch, results, runs=runs)
        else:
            jobs = await backend.finish_runs(job_ids, patch, results)
        if self._cache:
            self._forget(job_ids)
        return jobs
