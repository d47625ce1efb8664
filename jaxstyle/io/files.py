"""Writing files so that nothing is ever half-written or lost: atomic replacement, several files as one,
temporary names that fit, the umask honoured, a full disk as one line."""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from ..errors import JaxstyleError


TEMP_TAG = ".jaxstyle-"  # in every temporary file name this package writes: only those are ever cleaned
NAME_MAX = 255  # bytes in one file name, on every common filesystem


class DiskFull(JaxstyleError):
    """The device ran out of space (or quota) while writing; nothing was replaced."""


def _temp_stem(name: str) -> str:
    """The part of ``name`` a temporary file's name carries: all of it, or for a name so long that
    ``.NAME.jaxstyle-PID-XXXXXXXX.tmp`` would pass :data:`NAME_MAX` bytes, its start and a hash."""
    if len(f".{name}{TEMP_TAG}4194304-abcdefgh.tmp".encode()) <= NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return name.encode()[:160].decode(errors="ignore") + "~" + digest


def _new_mode(path: Path) -> int:
    """The mode a written file gets: the replaced file's, else what the umask allows (as ``open`` would)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (setting it to read it
    would briefly change it for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    Readers see the old file or the complete new one, never a half-written one; the new file keeps
    the replaced file's mode (else the umask's). Temporary files left by a killed earlier writer of
    ``path`` (their process is gone) are removed first. Raises :class:`DiskFull` when the device
    runs out of space, the old file untouched.
    """
    atomic_write_all([(path, write)])


def atomic_write_all(files) -> None:
    """:func:`atomic_write` of several files as one: every ``(path, write)`` is written to its
    temporary file first and only then are all renamed into place, so a failure in any (a full
    disk) replaces none of them (an image is never left without its sidecar)."""
    written = []
    try:
        for path, write in files:
            path = Path(path)
            clean_stale_temps(path.parent, _temp_stem(path.name))
            fd, tmp = tempfile.mkstemp(prefix=f".{_temp_stem(path.name)}{TEMP_TAG}{os.getpid()}-", suffix=".tmp",
                                       dir=path.parent)
            os.close(fd)
            written.append((tmp, path))
            write(tmp)
            os.chmod(tmp, _new_mode(path))
        for tmp, path in written:
            os.replace(tmp, path)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            where = written[-1][1] if written else Path(files[0][0])
            raise DiskFull(f"no space left on the device of {str(where.parent)!r} writing {where.name!r}; free "
                           "space or write elsewhere (nothing was replaced)") from None
        raise
    finally:
        for tmp, _ in written:
            if os.path.exists(tmp):
                os.unlink(tmp)


def clean_stale_temps(folder: str | os.PathLike, name: str = "*") -> list[Path]:
    """Remove this package's temporary files in ``folder`` (for target ``name``, as :func:`_temp_stem`
    shortens it) whose writing process is no longer alive; never anyone else's files. Returns the
    removed paths."""
    removed = []
    for tmp in Path(folder).glob(f".{glob.escape(name)}{TEMP_TAG}*.tmp"):
        pid = tmp.name.rsplit(TEMP_TAG, 1)[1].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True
