"""Output safety: write-then-rename, and the one set of rules every command's outputs follow.

- An output is written under a temporary name beside it and renamed only when complete, so a
  failed or interrupted run never leaves half a file and never replaces a good one.
- ``check_outputs`` refuses, before any work, an output that would overwrite an input of the same
  run (the same path, the same file through a link, or a frame folder holding the input), two
  outputs that name the same file, and an empty path.
- A frame-folder output (``check_frame_folder``) must be new, empty, or hold only the frames an
  earlier dagan run recorded in its manifest, and then only with ``--overwrite``: dagan never
  deletes or replaces a file it did not write.
- Temporary names stay within the file system's name limit, and stale temporaries of dagan's own
  naming (left by a killed run) are removed next to a new output once they are a day old.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from dagan.errors import DaganError, first_line

#: The part of every temporary name that marks it as dagan's: ``.NAME.XXXXXXXX.partial.SUFFIX``.
PARTIAL = ".partial"
#: Prefix of the hidden folder a frame writer stages its frames in.
STAGING_PREFIX = ".partial-"
#: Temporaries older than this are left over from a killed run (no run writes one file for a day).
STALE_AFTER_S = 24 * 3600
#: The file in a frame folder that lists the frames dagan wrote there (and so may replace).
FRAME_MANIFEST = ".dagan-frames.json"
FRAME_NAME = re.compile(r"^\d{6}\.png$")

# mkstemp's random part is 8 characters of [a-z0-9_].
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.partial(\.[A-Za-z0-9]+)?$")
_STAGING = re.compile(r"^\.partial-[a-z0-9_]{8}$")
_RANDOM_PART = len(".XXXXXXXX")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; finished outputs get the usual permissions instead.
_FILE_MODE = 0o666 & ~_current_umask()


def _name_limit(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _temporary_prefix(name: str, suffix: str, directory: Path) -> str:
    """``.NAME.`` shortened so the whole temporary name fits the file system's limit (in bytes)."""
    room = _name_limit(directory) - len(os.fsencode(f"..{PARTIAL}{suffix}")) - _RANDOM_PART + 1
    encoded = os.fsencode(name)
    if len(encoded) > room:
        name = encoded[: max(room, 1)].decode(errors="ignore") or "out"
    return f".{name}."


def is_own_temporary(name: str) -> bool:
    """Whether a file or folder name is one of dagan's temporary names."""
    return bool(_TEMPORARY.match(name) or _STAGING.match(name))


#: Folders already swept in this process: a frame writer writes thousands of files into one.
_swept: set[str] = set()


def remove_stale_temporaries(directory: str | Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete dagan's own temporaries in ``directory`` that a killed run left more than a day ago."""
    removed = []
    cutoff = time.time() - older_than_s
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not is_own_temporary(entry.name):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue  # another run's, or not ours to remove after all
    return removed


@contextlib.contextmanager
def atomic_output(final: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only if the block succeeds."""
    final = Path(final)
    directory = final.parent if str(final.parent) else Path(".")
    if not directory.is_dir():
        raise DaganError(f"cannot write {final}: directory {directory} does not exist")
    if final.is_dir():
        raise DaganError(f"cannot write {final}: it is a directory")
    suffix = final.suffix if suffix is None else suffix
    key = os.path.realpath(directory)
    if key not in _swept:
        remove_stale_temporaries(directory)
        _swept.add(key)
    try:
        prefix = _temporary_prefix(final.name, suffix, directory)
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=f"{PARTIAL}{suffix}", dir=directory)
    except OSError as exc:
        raise DaganError(f"cannot write {final}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, _FILE_MODE)
    try:
        yield tmp
        os.replace(tmp, final)
    except DaganError as exc:
        tmp.unlink(missing_ok=True)
        # Users never see temporaries: an error about one is about the file it becomes.
        if str(tmp) in str(exc):
            raise DaganError(str(exc).replace(str(tmp), str(final))) from exc
        raise
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is not None and os.fspath(exc.filename) == str(tmp):
            raise DaganError(f"cannot write {final}: {exc.strerror or exc}") from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _Discarded(BaseException):
    """Thrown into ``atomic_output`` to drop its temporary file without an error."""


class AtomicFile:
    """``atomic_output`` for a writer that outlives one ``with`` block: ``commit`` renames, ``discard`` drops."""

    def __init__(self, final: str | Path, suffix: str | None = None):
        self.final = Path(final)
        self._context = atomic_output(final, suffix)
        self.path = self._context.__enter__()
        self._open = True

    def commit(self) -> None:
        """Rename the temporary file onto the final name."""
        if self._open:
            self._open = False
            self._context.__exit__(None, None, None)

    def discard(self) -> None:
        """Remove the temporary file; the final name is left as it was."""
        if self._open:
            self._open = False
            self._context.__exit__(_Discarded, _Discarded(), None)


def describe_write_failure(path: str | Path, exc: BaseException) -> str:
    """Why writing ``path`` failed, in one line: libraries report a full disk in words of their own."""
    directory = Path(path).parent
    try:
        full = shutil.disk_usage(directory).free < 1 << 20
    except OSError:
        full = False
    if full:
        return f"cannot write {path} (no space left on the device)"
    return f"cannot write {path} ({first_line(exc, 160)})"


def check_writable_directory(directory: str | Path) -> Path:
    """Create ``directory`` if needed and make sure files can be written in it."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise DaganError(f"cannot write to {directory}: it exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".dagan-write-test.", dir=directory)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise DaganError(f"cannot write to {directory}: {exc.strerror or exc}") from exc
    return directory


@contextlib.contextmanager
def removed_if_failed_empty(directory: str | Path) -> Iterator[Path]:
    """On failure, remove ``directory`` (and the parents) if this block created them and they hold no file.

    Only empty folders are removed, so nothing a run wrote, nor anything of the user's, is lost.
    """
    directory = Path(directory)
    created = []
    probe = directory
    while not probe.exists() and probe != probe.parent:
        created.append(probe)
        probe = probe.parent
    try:
        yield directory
    except BaseException:
        if created and directory.is_dir():
            for folder, _, _ in os.walk(directory, topdown=False):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
        for folder in created[1:]:  # the parents it made, innermost first
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def check_outputs(
    outputs: Mapping[str, str | Path | None],
    inputs: Mapping[str, str | Path | Iterable[Path] | None],
    folders: Iterable[str] = (),
) -> None:
    """Refuse outputs that would overwrite an input or each other, before any work is done.

    ``outputs`` maps a flag (as the user typed it) to its path or ``None``; ``inputs`` maps a flag
    to its path, or to the files read through it (a dataset's clips); ``folders`` names the outputs
    that are folders, which may not hold an input either.
    """
    folders = set(folders)
    given = {flag: path for flag, path in outputs.items() if path is not None}
    for flag, path in given.items():
        if str(path).strip() == "":
            raise DaganError(f"{flag} is empty: give a file or folder name")
    sources = [
        (flag, Path(path))
        for flag, value in inputs.items()
        if value is not None
        for path in ([value] if isinstance(value, str | Path) else value)
        if str(path) != ""
    ]
    for flag, path in given.items():
        path = Path(path)
        for in_flag, source in sources:
            if _same_file(path, source) or (flag in folders and _inside(source, path)):
                raise DaganError(f"{flag} {path} would overwrite the input {in_flag} {source}: choose another output")
    seen: dict[str, Path] = {}
    for flag, path in given.items():
        path = Path(path)
        for other_flag, other in seen.items():
            if _same_file(path, other):
                raise DaganError(f"{flag} and {other_flag} both name {path}: give each output its own name")
        seen[flag] = path


def recorded_frames(directory: Path) -> set[str]:
    """Names of the frames an earlier dagan run wrote into ``directory`` (from its manifest)."""
    try:
        data = json.loads((directory / FRAME_MANIFEST).read_text())
        names = data["frames"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {name for name in names if isinstance(name, str) and FRAME_NAME.match(name)}


def check_frame_folder(directory: str | Path, overwrite: bool, flag: str = "--output") -> set[str]:
    """Make sure frames may be written into ``directory``; returns the earlier run's frames it may replace.

    Hidden files are never touched (frames have plain names), so they do not count; anything
    else that an earlier run did not record means the folder is the user's, and it is refused.
    """
    directory = Path(directory)
    if not directory.exists():
        return set()
    if not directory.is_dir():
        raise DaganError(f"{flag} {directory} exists and is not a folder")
    try:
        entries = [name for name in os.listdir(directory) if not name.startswith(".")]
    except OSError as exc:
        raise DaganError(f"cannot read {flag} {directory}: {exc.strerror or exc}") from exc
    if not entries:
        return set()
    ours = recorded_frames(directory)
    foreign = sorted(name for name in entries if name not in ours)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise DaganError(f"{flag} {directory} holds files dagan did not write ({shown}): give a new or empty folder")
    if not overwrite:
        raise DaganError(f"{flag} {directory} holds the frames of an earlier run: add --overwrite to replace them")
    return ours


def write_frame_manifest(directory: Path, names: Iterable[str]) -> None:
    """Record the frames dagan wrote into ``directory``, atomically."""
    with atomic_output(directory / FRAME_MANIFEST, suffix=".json") as tmp:
        tmp.write_text(json.dumps({"frames": sorted(names)}))
