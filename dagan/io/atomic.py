"""Write-then-rename, so a failed run never leaves half a file or clobbers a good one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dagan.errors import DaganError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; finished outputs get the usual permissions instead.
_FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_output(final: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only if the block succeeds."""
    final = Path(final)
    directory = final.parent if str(final.parent) else Path(".")
    if not directory.is_dir():
        raise DaganError(f"cannot write {final}: directory {directory} does not exist")
    suffix = final.suffix if suffix is None else suffix
    try:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".partial{suffix}", dir=directory)
    except OSError as exc:
        raise DaganError(f"cannot write {final}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, _FILE_MODE)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_writable_directory(directory: str | Path) -> Path:
    """Create ``directory`` if needed and make sure files can be written in it."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".dagan-write-test.", dir=directory)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise DaganError(f"cannot write to {directory}: {exc.strerror or exc}") from exc
    return directory
