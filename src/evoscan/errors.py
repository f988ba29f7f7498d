"""The exceptions the CLI turns into a one-line message and a non-zero exit, and the wording of
operating-system errors (a full disk, a read-only directory) for people."""

from __future__ import annotations

import errno
import os


class EvoscanError(Exception):
    """A problem with the user's input or environment, stated so the user can fix it."""


class UsageError(EvoscanError):
    """A bad option or combination of options (exit status 2, as for argparse's own errors)."""


def first_line(err: Exception) -> str:
    """A library's exception in one line, to quote in ours (many carry a report below the first)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


_OS_REASONS = {
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere, then run again",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere, then run again",
    errno.EFBIG: "file too large for this file system; write elsewhere",
    errno.EROFS: "read-only file system; choose a writable output location",
    errno.EACCES: "permission denied; check the permissions, or choose another location",
    errno.EPERM: "operation not permitted; check the permissions, or choose another location",
}


def os_error_message(err: OSError, path=None) -> str:
    """One line for an OSError: the file, and what went wrong in words that say what to do. (h5py's
    errors carry a multi-line message and no file name; the errno says enough.)"""
    where = path if path is not None else err.filename
    reason = _OS_REASONS.get(err.errno) or (os.strerror(err.errno) if err.errno
                                            else (str(err).strip().splitlines() or ["I/O error"])[0])
    return f"{where}: {reason}" if where else reason
