"""NumPy archives (``NAME.npz`` ground truth beside a clip): read without pickles, checked by name and type."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from dagan.errors import DaganError, first_line


def read_arrays(path: str | Path, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> dict:
    """The numeric arrays ``required`` (each must be there) and ``optional`` (if there) of an ``.npz``.

    Object arrays are refused, never unpickled; any unreadable archive is one ``DaganError`` line.
    """
    path = Path(path)
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DaganError(f"{path} is not an .npz archive")
            missing = [name for name in required if name not in archive.files]
            if missing:
                raise DaganError(f"{path} lacks the array {missing[0]!r}")
            for name in (*required, *(name for name in optional if name in archive.files)):
                value = archive[name]
                if value.dtype.kind not in "biuf":
                    raise DaganError(f"{path}: array {name!r} holds {value.dtype} values, not numbers")
                arrays[name] = value
    except DaganError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DaganError(f"{path} is not a readable .npz archive ({first_line(exc, 120)})") from exc
    return arrays
