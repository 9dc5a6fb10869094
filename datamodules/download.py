"""Download an archive, verify its checksum and unpack it, leaving nothing half-written behind."""

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path


class DownloadError(RuntimeError):
    pass


def download(url: str, dest: Path, md5: str, timeout: float = 60.0) -> Path:
    """Fetch `url` to `dest` through a temporary file; `dest` appears only complete and verified."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        digest, received = hashlib.md5(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
        # http.client ends a cut-off body quietly instead of raising, so count the bytes ourselves
        if expected is not None and received != int(expected):
            raise DownloadError(f"download of {url} was interrupted: got {received} of {expected} bytes")
        if digest.hexdigest() != md5:
            raise DownloadError(f"checksum mismatch for {url}: md5 {digest.hexdigest()}, expected {md5}")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as error:
        Path(tmp).unlink(missing_ok=True)
        raise DownloadError(f"could not download {url}: {error}") from error
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def extract(archive: Path, dest_dir: Path, member: str) -> Path:
    """Unpack `archive` and move its top-level folder `member` into `dest_dir` in one rename."""
    dest_dir = Path(dest_dir)
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=dest_dir) as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        if not (Path(tmp) / member).is_dir():
            raise DownloadError(f"{archive} does not contain the folder {member!r}")
        target = dest_dir / member
        if target.exists():
            shutil.rmtree(target)
        os.replace(Path(tmp) / member, target)
    return target
