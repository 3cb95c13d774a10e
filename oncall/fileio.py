"""Writing a file the responder asked for (a postmortem, an eval set, an export), all or nothing.

A temporary file beside the target, then a rename: a reader never sees half a file, a failed write
leaves the old one, and the temporary file never outlives the writer (a full disk used to leave a
`.tmp` behind). A refusal by the machine (full disk, read-only, permission) is a MachineError
naming the path and what to do (exit 2).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from oncall.errors import MachineError, is_machine_error


def write_atomic(path: Path, text: str | Iterable[str], doing: str = "writing the file") -> Path:
    """Write `text` (or each string of an iterable, streamed) to `path` through `path.tmp`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            if isinstance(text, str):
                fh.write(text)
            else:
                for chunk in text:
                    fh.write(chunk)
        tmp.replace(path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the directory itself refused: nothing was created there
        if isinstance(exc, OSError) and is_machine_error(exc):
            raise MachineError(path, exc, doing) from None
        raise
    return path


def writable_refusal(directory: Path) -> OSError | None:
    """Why `directory` cannot be written (read-only file system, permission), or None."""
    if os.access(directory, os.W_OK):
        return None
    import errno

    try:
        readonly = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError as exc:
        return exc
    code = errno.EROFS if readonly else errno.EACCES
    return OSError(code, os.strerror(code), str(directory))
