"""Download an archive, verify its checksum and unpack it: once per folder under a lock, and atomically.

`prepare` is the one way data appears under `data/`: several processes (the local rank 0 of every node on a
shared filesystem, two runs started at once) wait for one lock beside the target; the first downloads and
unpacks into a temporary sibling folder and renames it into place in one step, the others then find it ready.
Nothing half-written is ever visible, no process removes or replaces a folder another one made, and a failure
leaves nothing behind: not the temporary folder, not the lock, not the parent folders it had to create; the
temporary folder of an attempt that was killed (its process gone) is removed by the next attempt on that host.
"""

import contextlib
import glob
import hashlib
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock  # a dependency of torch; fcntl/msvcrt locks that also work on NFS

from callbacks import UserError


class DownloadError(RuntimeError):
    pass


class MissingDataError(UserError, FileNotFoundError):
    """Data that is not where the user said: a UserError (one line from train.py), still a FileNotFoundError."""


def download(url: str, dest: Path, checksum: str | None, algorithm: str = "md5", timeout: float = 60.0) -> Path:
    """Fetch `url` to `dest` through a temporary file; `dest` appears only complete and verified.

    `checksum` is the hex digest (`algorithm`: md5, sha256); None skips the check (the caller verifies).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        digest, received = hashlib.new(algorithm), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
        # http.client ends a cut-off body quietly instead of raising, so count the bytes ourselves
        if expected is not None and received != int(expected):
            raise DownloadError(f"download of {url} was interrupted: got {received} of {expected} bytes")
        if checksum is not None and digest.hexdigest() != checksum:
            raise DownloadError(f"checksum mismatch for {url}: {algorithm} {digest.hexdigest()}, expected {checksum}")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as error:
        Path(tmp).unlink(missing_ok=True)
        reason = (f"HTTP {error.code} {error.reason}" if isinstance(error, urllib.error.HTTPError)
                  else getattr(error, "reason", None) or error)  # URLError wraps the socket error: show that alone
        raise DownloadError(f"could not download {url}: {reason}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def unpack(archive: Path, dest_dir: Path) -> None:
    """Unpack a .tar(.gz) or .zip into `dest_dir`; a zip's CRC-32 of every member is checked first."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise DownloadError(f"{archive} is damaged: {bad} fails its CRC check")
                zf.extractall(dest_dir)  # zipfile drops absolute paths and '..' from member names
        else:
            with tarfile.open(archive) as tar:
                extract_tar(tar, dest_dir)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise DownloadError(f"{archive} is not a readable archive ({error})") from None


def extract_tar(tar: tarfile.TarFile, dest_dir: Path) -> None:
    """tar.extractall with tarfile's "data" filter (no paths outside dest_dir, no links out, no devices), or on the
    Pythons before it (3.10.0-3.10.11, 3.11.0-3.11.3, which refuse the filter argument) the same checks by hand:
    plain files and folders only, at relative paths without '..'."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest_dir, filter="data")
        return
    members = tar.getmembers()
    for member in members:
        parts = Path(member.name).parts
        if not (member.isfile() or member.isdir()) or Path(member.name).is_absolute() or ".." in parts:
            raise DownloadError(f"{tar.name} holds {member.name!r}, which is not a plain file or folder inside the "
                                f"archive; not unpacked")
    tar.extractall(dest_dir, members=members)  # noqa: S202 (members checked above)


def _missing_parents(folder: Path) -> list[Path]:
    """The folders `mkdir(parents=True)` would create, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_stale(target: Path) -> None:
    """Temporary folders of killed attempts on this host (their process is gone): a partial download each."""
    prefix = f".{target.name}.{socket.gethostname()}-"
    for folder in target.parent.glob(glob.escape(prefix) + "*.part"):
        pid = folder.name[len(prefix):].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def prepare(target: Path, ready: Callable[[Path], bool], fill: Callable[[Path], None], member: str | None = None,
            timeout: float = -1) -> Path:
    """Make the folder `target` once, atomically: under a lock beside it, unless `ready(target)` already,
    `fill(tmp)` a fresh temporary sibling folder, then rename `tmp` (or `tmp/member`) to `target`.

    Two processes never both fill (the second waits, then finds `target` ready); if `ready` stays false
    because a lock could not serialise them (a lock file on a filesystem without locks), the rename still
    cannot replace another process's folder: the later one finds `target` taken and keeps it.
    """
    target = Path(target)
    created = _missing_parents(target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_file = target.parent / f".{target.name}.lock"
    done = False
    try:
        with FileLock(lock_file, timeout=timeout):
            try:
                if not ready(target):
                    _remove_stale(target)
                    # host and pid in the name: a later attempt can tell a killed one's folder from a live one's
                    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{socket.gethostname()}-{os.getpid()}.",
                                                suffix=".part", dir=target.parent))
                    try:
                        fill(tmp)
                        try:
                            os.replace(tmp / member if member else tmp, target)  # onto a missing or empty folder
                        except OSError:
                            if not ready(target):
                                raise
                    finally:
                        shutil.rmtree(tmp, ignore_errors=True)
                done = True
            finally:
                # removed while held: a process still waiting on the old file then finds the data ready (or,
                # after a failure, tries again in its own temporary folder), so no stale lock file is left
                with contextlib.suppress(OSError):  # Windows cannot remove an open file
                    lock_file.unlink(missing_ok=True)
    finally:
        if not done:  # leave no trace of a failed attempt: the folders made for it
            for folder in reversed(created):
                try:
                    folder.rmdir()
                except OSError:  # not empty: another process is using it
                    break
    return target
