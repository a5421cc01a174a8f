"""One run, one directory: the exclusive lock a run holds on its directory, and one-line messages
for a directory that cannot be used.

A run (and each job of a sweep) locks ``<dir>/.dendsn.lock`` with ``flock`` for the life of its
process; a second run into the same directory fails in one line. The kernel drops the lock when
the process ends however it ends (SIGKILL too), so `is_locked` also tells a live run from one that
was killed and left ``status: running`` behind.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import UserError, shorten

_LOCKS: dict = {}   # real path -> open lock file, held for the life of the process
LOCK_NAME = ".dendsn.lock"


def dir_problem(path: Path, key: str, e: OSError) -> UserError:
    shown = shorten(path)
    if e.errno == errno.ENAMETOOLONG:
        return UserError(f"{key}={shown} is too long a path for the file system; choose a shorter {key}")
    if isinstance(e, (NotADirectoryError, FileExistsError)) or e.errno in (errno.ENOTDIR, errno.EEXIST):
        parent = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
        if parent == path:
            return UserError(f"{key}={shown} is a file, not a directory; choose another {key}")
        return UserError(f"{key}={shown} lies below {shorten(parent)}, which is a file; choose another {key}")
    if isinstance(e, PermissionError) or e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UserError(f"{key}={shown} cannot be written ({e.strerror}); choose a directory you can write to")
    return UserError(f"{key}={shown} cannot be used ({e.strerror or e}); choose another {key}")


def lock_dir(path: Path, key: str) -> None:
    """Hold an exclusive lock on ``path`` for the life of this process: a second run into it fails in
    one line. The kernel drops the lock when the process ends, however it ends (SIGKILL too)."""
    try:
        import fcntl
    except ImportError:          # not POSIX: no lock
        return
    real = os.path.realpath(path)
    if real in _LOCKS:
        return
    try:
        f = open(Path(path) / LOCK_NAME, "a+")
    except OSError as e:
        raise dir_problem(Path(path), key, e) from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        pid = f.read().strip()
        f.close()
        raise UserError(f"{key}={shorten(path)} is in use by another dendsn run{f' (pid {pid})' if pid.isdigit() else ''}; "
                        f"wait for it to end, or choose another {key}") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    _LOCKS[real] = f


def is_locked(path: Path) -> bool:
    """Is a live dendsn process holding ``path``'s lock (the run is still going)?"""
    try:
        import fcntl
    except ImportError:
        return False
    lock = Path(path) / LOCK_NAME
    if os.path.realpath(path) in _LOCKS:
        return True
    if not lock.exists():
        return False
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


