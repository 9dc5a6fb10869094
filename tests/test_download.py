"""datamodules/download.py called directly: a body read in several chunks, the offline message, the temporary folders
of other attempts left alone, and prepare's rename of the temporary folder itself or onto a folder already taken."""

import errno
import hashlib
import os
import socket
import subprocess

import pytest
from conftest import http_server, reply

from datamodules.download import DownloadError, download, prepare


def test_a_body_of_several_chunks_lands_whole_and_verified_in_a_new_folder(tmp_path):
    body = bytes(range(256)) * 10_000  # 2.56 MB: read as 1 MiB, 1 MiB and the rest
    with http_server(lambda handler: reply(handler, body)) as url:
        dest = download(f"{url}/blob", tmp_path / "new" / "deeper" / "blob.bin", hashlib.sha256(body).hexdigest(),
                        "sha256")
    assert dest == tmp_path / "new" / "deeper" / "blob.bin" and dest.read_bytes() == body
    assert os.listdir(dest.parent) == ["blob.bin"]  # no .part file left


def test_an_unreachable_server_is_named_with_the_socket_error_alone(tmp_path):
    with socket.socket() as free:  # a port nothing listens on once this socket is closed
        free.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{free.getsockname()[1]}/archive.tar.gz"
    refused = f"[Errno {errno.ECONNREFUSED}] {os.strerror(errno.ECONNREFUSED)}"  # not urllib's <urlopen error ...>
    with pytest.raises(DownloadError) as error:
        download(url, tmp_path / "archive.tar.gz", None)
    assert str(error.value) == f"could not download {url}: {refused}"
    assert os.listdir(tmp_path) == []


def test_temporary_folders_of_a_live_process_of_another_user_or_a_link_are_left_alone(tmp_path, monkeypatch):
    """Only a folder whose process is gone is removed: a process os.kill may not signal (another user's; the tests run
    as root, whom nothing refuses, so os.kill refuses here) is alive, and a link named as a stale folder is neither
    followed nor in the way of the download."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    foreign = 2**22 + 1  # above the largest pid Linux gives out: no process's, never signalled for real
    real_kill = os.kill

    def kill(pid, signal):
        if pid == foreign:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
        return real_kill(pid, signal)

    monkeypatch.setattr(os, "kill", kill)
    stale = f".set.{socket.gethostname()}-"
    kept = tmp_path / "kept"
    (kept / "data").mkdir(parents=True)
    (tmp_path / f"{stale}{dead.pid}.link.part").symlink_to(kept)
    for pid in (dead.pid, foreign):
        (tmp_path / f"{stale}{pid}.abc.part").mkdir()
        (tmp_path / f"{stale}{pid}.abc.part" / "partial").write_bytes(b"x")
    prepare(tmp_path / "set", lambda target: target.is_dir(), lambda tmp: (tmp / "file").write_text("new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["kept", "set", f"{stale}{dead.pid}.link.part", f"{stale}{foreign}.abc.part"])
    assert (kept / "data").is_dir() and (tmp_path / "set" / "file").read_text() == "new"


def test_prepare_without_member_renames_the_temporary_folder_itself(tmp_path):
    target = tmp_path / "data" / "set"

    def fill(tmp):
        (tmp / "a.txt").write_text("filled")

    assert prepare(target, lambda t: (t / "a.txt").is_file(), fill) == target
    assert os.listdir(target) == ["a.txt"] and (target / "a.txt").read_text() == "filled"
    assert os.listdir(tmp_path / "data") == ["set"]  # no lock file, no temporary folder


@pytest.mark.parametrize("theirs_ready", [True, False])
def test_a_rename_onto_a_folder_another_process_made_keeps_theirs(tmp_path, theirs_ready):
    """Two processes the lock did not serialise: while this one fills, the other puts its folder in place. The rename
    cannot replace it; it is kept, as found ready, or the rename's error is raised when it is not ready."""
    target = tmp_path / "set"

    def fill(tmp):
        (tmp / "unpacked").mkdir()
        (tmp / "unpacked" / "mine").write_text("mine")
        target.mkdir()  # the other process's folder, whole
        (target / "theirs").write_text("theirs")

    def ready(folder):
        return theirs_ready and (folder / "theirs").is_file()

    if theirs_ready:
        assert prepare(target, ready, fill, member="unpacked") == target
    else:
        with pytest.raises(OSError) as error:
            prepare(target, ready, fill, member="unpacked")
        assert error.value.errno in (errno.ENOTEMPTY, errno.EEXIST)
    assert os.listdir(target) == ["theirs"] and os.listdir(tmp_path) == ["set"]  # no lock, no temporary folder
