"""Safe file output.

Atomic writes: a reader (or a crash) never sees half a file or half a folder, because everything is
written under a temporary name in the destination folder and then renamed into place. Temporary
files are private while they are written (mkstemp/mkdtemp) and get the mode a plain `open()` /
`mkdir()` would have given (the umask applies) before they are renamed.

`check_output` is the guard every command runs on its outputs before any work: an output may not
be, contain or sit inside one of the command's inputs, and an existing non-empty folder is only
replaced when the caller allows it and the folder's marker file proves it is ours."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal

from prunekit.errors import OutputError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc); elsewhere it is
    set and restored under a lock."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def public_mode(path: str | os.PathLike) -> None:
    """Give a file or folder created private by mkstemp/mkdtemp the mode open()/mkdir() would give."""
    base = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, base & ~current_umask())


def temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new uniquely named folder in `parent` with the umask's mode (for write-then-rename)."""
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    public_mode(tmp)
    return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed.

    For writers that want a file name (cv2.imwrite, safetensors.save_file, VideoWriter): pass a
    suffix with the right extension so they pick the right format.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        public_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write bytes (or UTF-8 text) to `path` atomically."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder next to `path`; on success it takes the place of `path` (an
    existing folder there is moved aside first and deleted only after the swap), on error it is removed.
    Callers decide beforehand (`check_output`) whether an existing `path` may be replaced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(path.parent, f".{path.name}.partial.")
    try:
        yield tmp
        old = None
        if path.is_dir() and not path.is_symlink():
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(path, old)
        os.rename(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _real(path: str | os.PathLike) -> Path:
    """Absolute path with every symlink that exists resolved (the rest kept as written)."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_not_input(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], *,
                    what: str = "output") -> Path:
    """OutputError when `out` is, contains or sits inside one of `inputs` (None entries skipped; real
    paths, symlinks resolved); returns the real path of `out`. The first rule of `check_output`."""
    real = _real(out)
    for source in inputs:
        if source is None:
            continue
        src = _real(source)
        if real == src:
            raise OutputError(f"{what} {out}: is the input itself; writing there would overwrite it. Choose "
                              "another output path")
        if _within(real, src):
            raise OutputError(f"{what} {out}: is inside the input {source}; writing there could overwrite the "
                              f"input. Choose an output outside {source}")
        if _within(src, real):
            raise OutputError(f"{what} {out}: contains the input {source}; replacing it would delete the input. "
                              "Choose an output that does not hold the command's inputs")
    return real


def check_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), *,
                 kind: Literal["file", "folder"], allow_existing: bool = False,
                 marker: str | Callable[[Path], bool] | None = None, what: str = "output",
                 flag: str = "--overwrite") -> Path:
    """Refuse, before any work, an output that would destroy something the user owns; returns its real path.

    - `out` may not be, contain, or sit inside any of `inputs` (real paths: symlinks resolved);
    - no component above `out` may be a file, and `out` itself must be a `kind` (a regular file for
      "file") when it exists;
    - an existing file, or an existing non-empty folder, is refused unless `allow_existing` (the
      command's `flag` was given), and even then only when `marker` proves it was written by us: a
      file name that must exist inside the folder, or a predicate on the path.

    Raises OutputError naming the path, the problem and what to do.
    """
    real = _real(out)
    if kind == "file" and real.is_dir():
        raise OutputError(f"{what} {out}: is a folder; give a file name")
    check_not_input(out, inputs, what=what)
    for parent in real.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{what} {out}: {parent} is a file, so nothing can be written below it")
            break
    if not os.path.lexists(real):
        return real
    try:
        mode = os.stat(real).st_mode
    except OSError as exc:
        raise OutputError(f"{what} {out}: cannot inspect ({exc.strerror or exc})") from None
    if kind == "file":
        if stat.S_ISDIR(mode):
            raise OutputError(f"{what} {out}: is a folder; give a file name")
        if not stat.S_ISREG(mode):
            raise OutputError(f"{what} {out}: exists and is not a regular file (a FIFO, socket or device); "
                              "give another file name")
        existing = "file"
    else:
        if not stat.S_ISDIR(mode):
            raise OutputError(f"{what} {out}: is a file, not a folder; give a folder name (a new or empty folder)")
        if not any(real.iterdir()):
            return real
        existing = "non-empty folder"
    if not allow_existing:
        hint = f"pass {flag} to replace it, or choose " if flag and marker is not None else "choose "
        raise OutputError(f"{what} {out}: already exists ({existing}); {hint}a new path")
    if marker is not None and not _marked(real, marker):
        proof = f"no {marker} inside" if isinstance(marker, str) else "not a file this command writes"
        raise OutputError(f"{what} {out}: exists ({existing}) and is not an output of this command ({proof}); "
                          "it is left untouched. Choose a new path")
    return real


def _marked(path: Path, marker: str | Callable[[Path], bool]) -> bool:
    if isinstance(marker, str):
        return (path / marker).is_file()
    try:
        return bool(marker(path))
    except (OSError, ValueError, UnicodeDecodeError):
        return False

