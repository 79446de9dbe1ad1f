"""One run per run folder: an OS file lock (`flock`) on `<run folder>/.prunekit-run.lock`, held for
the whole run. The OS drops the lock when its process dies, however it dies, so a lock can never
outlive its owner; the file keeps the owner's PID while held (for the message a second run gets) and
is emptied on a clean release, so a PID found in it on acquiring means the last owner was killed."""

from __future__ import annotations

import fcntl
import os
import warnings
from pathlib import Path

from prunekit.errors import OutputError

LOCK_FILE = ".prunekit-run.lock"


class RunLock:
    """`with RunLock(folder):` or `acquire()` / `release()`; refuses (OutputError) while another
    process holds the folder, naming its PID."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None
        self.stale_owner: str | None = None  # PID left by an owner that died holding the lock

    def acquire(self) -> "RunLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read(fd) or "unknown"
            os.close(fd)
            raise OutputError(f"out_dir {self.run_dir}: another prunekit run (PID {owner}) is using this run folder; "
                              "wait for it to finish, stop it, or choose another out_dir") from None
        except OSError as exc:
            os.close(fd)
            raise OutputError(f"out_dir {self.run_dir}: cannot lock {self.path} ({exc.strerror or exc})") from None
        previous = _read(fd)
        if previous:
            self.stale_owner = previous
            warnings.warn(f"out_dir {self.run_dir}: the run of PID {previous} ended without releasing its lock "
                          "(killed or crashed); this run takes the folder over", stacklevel=2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
