"""Files written whole or not at all, with the writer's own OSError, and no litter.

Every file anyorder writes (checkpoints, step-loss caches, policies, imputed tables) goes
through `write_atomic`: into a temporary file beside the target, named
`.<target>.<pid>.anyorder-partial` and locked (flock) while it is written, then renamed
into place. So a failure leaves the old file as it was; the error is the OSError of the
write itself (a full disk is ENOSPC however the serialiser reports it: torch.save, for one,
turns its stream's errors into a RuntimeError, so the stream records the first one); and a
temporary file whose writer was killed (SIGKILL, power loss) is recognised as stale — its
process is gone and nobody holds its lock — and removed by the next write into the folder
(`remove_stale`). Files of other programs never match the name pattern. A target that
exists and is neither a regular file nor a folder (a device such as /dev/null, a pipe) is
written straight into: renaming over it would put a regular file in the device's place.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO, Callable

SUFFIX = ".anyorder-partial"
_PATTERN = re.compile(r"^\..+\.(\d+)" + re.escape(SUFFIX) + "$")


def temporary(path: Path, pid: int | None = None) -> Path:
    """The temporary file of a write of `path` by process `pid` (default: this one)."""
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}{SUFFIX}")


class _Recording(io.RawIOBase):
    """A binary stream over a file that remembers the first OSError of a write, so that
    the caller can raise it even when a serialiser replaced it with its own error."""

    def __init__(self, file: BinaryIO):
        super().__init__()
        self.file, self.error = file, None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = self.error or err
            raise


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(stream)` to fill `path` (a binary stream to write to), then rename it into
    place, synced to disk. Raises the OSError of the failed write, its filename `path`; the
    temporary file is removed on any failure. Stale temporary files in the folder go first.
    A device or pipe is written into as it stands (there is nothing to rename into place)."""
    path = Path(path)
    if not path.name:           # "", "." or "/": a folder, and no name to put a temporary file under
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if _is_special(path):
        return _write_into(path, write)
    remove_stale(path.parent)
    tmp = temporary(path)
    stream = None
    try:
        with open(tmp, "xb") as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX)
            stream = _Recording(file)
            try:
                write(stream)
                file.flush()
                os.fsync(file.fileno())
            except Exception:
                if stream.error is not None:
                    raise stream.error from None
                raise
        os.replace(tmp, path)
    except OSError as err:
        err.filename = str(path)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _is_special(path: Path) -> bool:
    """Whether `path` (its link's target) exists and is neither a regular file nor a folder."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _write_into(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """`write` straight into a device or pipe, its OSError naming `path`."""
    try:
        with open(path, "wb") as file:
            stream = _Recording(file)
            try:
                write(stream)
                file.flush()
            except Exception:
                if stream.error is not None:
                    raise stream.error from None
                raise
    except OSError as err:
        err.filename = str(path)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True             # another user's process
    return True


def remove_stale(folder: str | Path) -> list[Path]:
    """Delete the temporary files in `folder` left by writes whose process is gone (the pid
    in the name runs no process and the file's lock is free); returns what was deleted.
    Files being written (their process alive or their lock held) are kept."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        found = _PATTERN.match(name)
        if found is None or int(found.group(1)) == os.getpid() or _alive(int(found.group(1))):
            continue
        path = Path(folder) / name
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)
            removed.append(path)
        except OSError:
            pass                  # locked: a writer on another host, or it cannot be deleted
        finally:
            os.close(fd)
    return removed
