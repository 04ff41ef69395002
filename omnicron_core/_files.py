"""Files and folders that hold jobs are private to their owner, whatever the umask.

Jobs carry webhook URLs, headers, tool parameters and messages: a store, an export and the
folders created for them are readable by their owner only (0600 files, 0700 folders), also
under ``umask 000``. Existing folders are left as they are (the operator chose them).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["create_private_file", "make_private_dirs", "write_private"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_dirs(folder: str | os.PathLike[str]) -> None:
    """Create ``folder`` and its missing parents, each 0700 (``mkdir -p`` with private modes;
    ``Path.mkdir(parents=True)`` would create the parents with the umask's modes).

    Raises :class:`OSError` naming the folder that could not be made.
    """
    missing: list[Path] = []
    path = Path(folder)
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not path.is_dir():
                raise
            continue
        # mkdir's mode is masked by the umask: a umask of 077 would do, 000 would not matter,
        # but one like 0o770 would leave the owner without access; set it exactly.
        os.chmod(path, DIR_MODE)


def create_private_file(path: str | os.PathLike[str]) -> None:
    """Create an empty 0600 file at ``path`` (and 0700 folders for it) unless one exists."""
    target = Path(path)
    if target.exists():
        return  # opening it for writing would fail on a read-only store, which can be read
    make_private_dirs(target.parent)
    try:
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    except FileExistsError:  # created meanwhile by another process
        return
    os.close(fd)


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` as a 0600 file, replacing what was there; an existing file is
    made 0600 too (it now holds the same data as the store)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
