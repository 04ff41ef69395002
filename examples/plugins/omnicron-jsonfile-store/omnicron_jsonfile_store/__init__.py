"""``jsonfile://``: an example third-party store backend keeping jobs in one JSON file.

Written against the public plugin API only (``omnicron_core.plugin`` and the models of
``omnicron_core``); see README.md and omnicron's docs/stores.md.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import msgspec

from omnicron_core.plugin import (
    Job,
    JobPatch,
    JobStatus,
    StoreBackend,
    StoreBackendSpec,
    StoreError,
    decode_job,
    encode_job,
    hookimpl,
)

__all__ = ["JsonFileBackend", "omnicron_store_backends"]

T = TypeVar("T")


class JsonFileBackend(StoreBackend):
    """All jobs in one JSON array; a lock file serialises processes and threads."""

    # other processes may write the same file while a scheduler runs: every operation
    # locks and re-reads it, and every write is atomic (temp file + fsync + rename)
    external_writers = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @classmethod
    def from_url(cls, url: str, options: Mapping[str, Any]) -> JsonFileBackend:
        """``jsonfile:///relative.json`` or ``jsonfile:////absolute.json``; no options.
        Parses only: creates nothing (``omnicron validate`` calls this)."""
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"jsonfile URL {url!r} has a host; use jsonfile:///path.json")
        path = unquote(parts.path)
        path = path[1:] if path.startswith("/") else path
        if not path or "\x00" in path:
            raise StoreError(f"jsonfile URL {url!r} names no file; e.g. jsonfile:///jobs.json")
        if options or parts.query:
            raise StoreError("the jsonfile store takes no options")
        return cls(path)

    # -- files (run in a worker thread) -----------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _read(self) -> dict[str, Job]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            rows = msgspec.json.decode(data, type=list[msgspec.Raw]) if data.strip() else []
            return {job.id: job for job in (decode_job(bytes(row)) for row in rows)}
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StoreError(f"jsonfile store {str(self.path)!r} is damaged: {exc}") from None

    def _write(self, jobs: dict[str, Job]) -> None:
        data = b"[" + b",".join(encode_job(jobs[k]) for k in sorted(jobs)) + b"]"
        folder = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=folder)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut
        finally:
            os.close(dir_fd)

    def _read_locked(self) -> dict[str, Job]:
        with self._locked(exclusive=False):
            return self._read()

    def _change(self, change: Callable[[dict[str, Job]], T]) -> T:
        """Read, change and write back the whole store under the exclusive lock."""
        with self._locked(exclusive=True):
            jobs = self._read()
            out = change(jobs)
            self._write(jobs)
            return out

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as exc:
            raise StoreError(
                f"jsonfile store {str(self.path)!r}: {exc.strerror or exc}",
                transient=False,
            ) from None

    # -- the StoreBackend interface ---------------------------------------------------------

    async def open(self) -> None:
        await self._io(self.path.parent.mkdir, 0o700, True, True)

    async def close(self) -> None:
        return None

    async def exists(self) -> bool:
        return self.path.exists()

    async def save(self, job: Job) -> None:
        await self.save_many([job])

    async def save_many(self, jobs: Sequence[Job]) -> None:
        copies = [job.copy() for job in jobs]  # never keep the caller's objects

        def change(stored: dict[str, Job]) -> None:
            stored.update((job.id, job) for job in copies)

        await self._io(self._change, change)

    async def get(self, job_id: str) -> Job | None:
        # every read decodes the file anew, so nothing returned is shared
        return (await self._io(self._read_locked)).get(job_id)

    async def delete(self, job_id: str) -> bool:
        return await self._io(self._change, lambda stored: stored.pop(job_id, None) is not None)

    async def list(self, status: JobStatus | None = None) -> builtins.list[Job]:
        jobs = await self._io(self._read_locked)
        return [jobs[k] for k in sorted(jobs) if status is None or jobs[k].status == status]

    async def count(self, status: JobStatus | None = None) -> int:
        return len(await self.list(status))

    async def next_due_at(self) -> datetime | None:
        due = _due((await self._io(self._read_locked)).values())
        return min(due)[0] if due else None

    async def claim_due(
        self, now: datetime, limit: int, mark: Callable[[Job], Job], *, owner: str = ""
    ) -> builtins.list[Job]:
        def change(stored: dict[str, Job]) -> builtins.list[Job]:
            due = sorted((at, job_id) for at, job_id in _due(stored.values()) if at <= now)
            out: builtins.list[Job] = []
            for _, job_id in due[:limit]:
                job = mark(stored[job_id])
                stored[job_id] = job.copy()
                out.append(job)
            return out

        return await self._io(self._change, change)

    async def update_many(self, job_ids: Sequence[str], patch: JobPatch) -> builtins.list[Job]:
        ids = list(job_ids)

        def change(stored: dict[str, Job]) -> builtins.list[Job]:
            out: builtins.list[Job] = []
            for job_id in ids:
                current = stored.get(job_id)
                if current is None:
                    continue
                job = patch(current.copy())
                if job is not None:
                    stored[job_id] = job.copy()
                    out.append(job)
            return out

        return await self._io(self._change, change)

    async def unscheduled(self, limit: int) -> builtins.list[Job]:
        jobs = await self.list(JobStatus.ENABLED)
        return [job for job in jobs if job.next_run_at is None][:limit]


def _due(jobs: Iterable[Job]) -> builtins.list[tuple[datetime, str]]:
    return [
        (job.next_run_at, job.id)
        for job in jobs
        if job.status == JobStatus.ENABLED and job.next_run_at is not None
    ]


@hookimpl
def omnicron_store_backends() -> builtins.list[StoreBackendSpec]:
    return [StoreBackendSpec("jsonfile", JsonFileBackend.from_url, "jobs in one JSON file")]
