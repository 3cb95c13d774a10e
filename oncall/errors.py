"""The one exception type for bad user input, raised by the core and mapped to exit 2 by the CLI.

A responder's typo (a filter term, an option value, a key to stratify by) must read as "fix your
command", and a bug must never read as that: the CLI maps `InputError` to exit 2 explicitly and
treats every other unexpected exception as an internal error (cliutil.EXIT_INTERNAL). So core code
raises `InputError` (or a subclass such as `FilterError`) for input it rejects, never a bare
ValueError, which Python itself raises for bugs.
"""

from __future__ import annotations

import errno


class InputError(Exception):
    """Input the responder gave cannot be used; the message names it and says what is allowed."""


# -- the machine says no: a full disk, a read-only or unreadable directory (issue 23) ----------------
_MACHINE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
# DuckDB reports the same conditions as its own IOException, with the OS's text inside.
_MACHINE_TEXTS = {
    "no space left on device": errno.ENOSPC,
    "disk quota exceeded": errno.EDQUOT,
    "read-only file system": errno.EROFS,
    "permission denied": errno.EACCES,
}


def machine_errno(exc: BaseException) -> int | None:
    """The errno of a refusal by the machine (full disk, read-only, permission), else None."""
    if isinstance(exc, OSError) and exc.errno in _MACHINE_ERRNOS:
        return exc.errno
    if isinstance(exc, OSError) or type(exc).__module__.lstrip("_").startswith("duckdb"):
        text = str(exc).lower()
        for phrase, code in _MACHINE_TEXTS.items():
            if phrase in text:
                return code
    return None


def is_machine_error(exc: BaseException) -> bool:
    return machine_errno(exc) is not None


class MachineError(InputError):
    """The machine refused: the message names the path, what happened and what to do (exit 2)."""

    def __init__(self, path: object, exc: BaseException, doing: str, hint: str | None = None) -> None:
        code = machine_errno(exc)
        what = _MACHINE_ERRNOS.get(code, str(exc)) if code is not None else str(exc)
        if hint is None:
            hint = {
                errno.ENOSPC: "free space there (df -h) or use an incident on another disk (--db PATH)",
                errno.EDQUOT: "free space there or use an incident on another disk (--db PATH)",
                errno.EROFS: "open it read-only (oncall open --read-only) or copy it to a writable disk",
                errno.EACCES: "check its permissions (ls -ld), or open it read-only (--read-only)",
                errno.EPERM: "check its permissions (ls -ld), or open it read-only (--read-only)",
            }.get(code, "check the disk")
        self.path = str(path)
        self.errno = code
        super().__init__(f"{path}: {what} ({doing}); {hint}")
