"""The fake Hub (tests/hubserver.py) against the real huggingface_hub client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import HfApi, hf_hub_download, snapshot_download  # noqa: E402
from huggingface_hub.utils import (  # noqa: E402
    EntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.hubserver import FakeHub, fake_hub  # noqa: E402,F401

REPO = "acme/tiny"
BINARY = bytes(range(256))


def _write_tree(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return folder


def _read_tree(folder: Path) -> dict[str, bytes]:
    folder = Path(folder)
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".cache" not in p.relative_to(folder).parts
    }


MAIN_FILES = {
    "config.json": json.dumps({"kind": "pair", "version": 1}).encode(),
    "weights.bin": BINARY,
    "sub/dir/notes.txt": b"hello\n",
}
V1_FILES = {
    "config.json": json.dumps({"kind": "pair", "version": 0}).encode(),
    "old.txt": b"from v1",
}


@pytest.fixture
def seeded(fake_hub: FakeHub, tmp_path: Path) -> FakeHub:
    fake_hub.add_repo(REPO, _write_tree(tmp_path / "src_main", MAIN_FILES))
    fake_hub.add_repo(REPO, _write_tree(tmp_path / "src_v1", V1_FILES), revision="v1")
    return fake_hub


def test_fixture_points_client_at_server(fake_hub: FakeHub, tmp_path: Path):
    from huggingface_hub import constants

    assert fake_hub.url.startswith("http://127.0.0.1:")
    assert os.environ["HF_ENDPOINT"] == fake_hub.url == constants.ENDPOINT
    assert not constants.HF_HUB_OFFLINE
    assert constants.HF_HUB_DISABLE_TELEMETRY
    assert os.environ["HF_TOKEN"]
    # Set by tests/conftest.py before huggingface_hub was imported: a scratch home, never the user's cache.
    assert Path(constants.HF_HUB_CACHE).is_relative_to(os.environ["HF_HOME"])
    assert HfApi().endpoint == fake_hub.url
    assert huggingface_hub.whoami()["name"] == "fake-user"


def test_hf_hub_download(seeded: FakeHub, tmp_path: Path):
    from huggingface_hub import constants

    path = hf_hub_download(REPO, "config.json")
    assert Path(path).read_bytes() == MAIN_FILES["config.json"]
    assert Path(path).is_relative_to(constants.HF_HUB_CACHE)
    nested = hf_hub_download(REPO, "notes.txt", subfolder="sub/dir")
    assert Path(nested).read_bytes() == b"hello\n"
    local = hf_hub_download(REPO, "weights.bin", local_dir=tmp_path / "local")
    assert Path(local).read_bytes() == BINARY
    assert seeded.unexpected == []


@pytest.mark.parametrize("revision", [None, "main"])
def test_snapshot_download(seeded: FakeHub, revision):
    folder = snapshot_download(REPO, revision=revision)
    assert _read_tree(folder) == MAIN_FILES
    assert Path(folder).name == seeded.commit_sha(REPO)
    assert seeded.unexpected == []


def test_second_revision(seeded: FakeHub, tmp_path: Path):
    api = HfApi()
    main_info = api.model_info(REPO)
    v1_info = api.model_info(REPO, revision="v1")
    assert main_info.sha != v1_info.sha
    assert len(main_info.sha) == 40 and len(v1_info.sha) == 40
    assert sorted(s.rfilename for s in main_info.siblings) == sorted(MAIN_FILES)
    assert sorted(s.rfilename for s in v1_info.siblings) == sorted(V1_FILES)

    folder = snapshot_download(REPO, revision="v1")
    assert Path(folder).name == v1_info.sha
    assert _read_tree(folder) == V1_FILES
    assert Path(hf_hub_download(REPO, "config.json", revision="v1")).read_bytes() == V1_FILES["config.json"]
    # by commit sha too
    assert Path(hf_hub_download(REPO, "old.txt", revision=v1_info.sha)).read_bytes() == b"from v1"
    assert _read_tree(snapshot_download(REPO, local_dir=tmp_path / "main_local")) == MAIN_FILES

    refs = api.list_repo_refs(REPO)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": main_info.sha, "v1": v1_info.sha}
    assert sorted(api.list_repo_files(REPO)) == sorted(MAIN_FILES)
    tree = {e.path: type(e).__name__ for e in api.list_repo_tree(REPO)}
    assert tree == {"config.json": "RepoFile", "weights.bin": "RepoFile", "sub": "RepoFolder"}
    assert seeded.unexpected == []


def test_unknown_repo(seeded: FakeHub):
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("acme/missing", "config.json")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("acme/missing")
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info("acme/missing")
    assert not HfApi().repo_exists("acme/missing")
    assert HfApi().repo_exists(REPO)


def test_unknown_revision(seeded: FakeHub):
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="nope")
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(REPO, revision="nope")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="0" * 40)


def test_unknown_file(seeded: FakeHub):
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.json")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "weights.bin", revision="v1")
    assert HfApi().file_exists(REPO, "config.json")
    assert not HfApi().file_exists(REPO, "missing.json")


@pytest.mark.parametrize("xet", [True, False], ids=["xet-pipeline", "no-xet-create-commit"])
def test_upload_roundtrip(fake_hub: FakeHub, tmp_path: Path, monkeypatch, xet):
    from huggingface_hub import constants

    if not xet:  # take the classic create_commit path instead of the hf_xet upload pipeline
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    repo = "someone/pushed"
    files = {
        "config.json": json.dumps({"a": 1, "nested": {"b": [1, 2, 3]}}, indent=2).encode(),
        "weights.bin": BINARY,
        "deep/empty.bin": b"",
        "deep/more.bin": BINARY * 3,
    }
    src = _write_tree(tmp_path / "to_push", files)
    api = HfApi()
    url = api.create_repo(repo, exist_ok=True)
    assert url.repo_id == repo
    api.create_repo(repo, exist_ok=True)  # second time: 409, swallowed
    info = api.upload_folder(repo_id=repo, folder_path=src, commit_message="first")
    assert info.oid == fake_hub.commit_sha(repo) == api.model_info(repo).sha
    assert _read_tree(fake_hub.repo_path(repo)) == files

    downloaded = snapshot_download(repo)
    assert _read_tree(downloaded) == files
    assert Path(downloaded).name == info.oid

    # Second push through the module-level helpers: one file changed, one added, one deleted.
    (src / "config.json").write_bytes(b'{"a": 2}')
    (src / "added.txt").write_bytes(b"new")
    (src / "deep" / "more.bin").unlink()
    info2 = huggingface_hub.upload_folder(repo_id=repo, folder_path=src, commit_message="second",
                                          delete_patterns=["deep/more.bin"])
    assert info2.oid != info.oid
    expected = {**files, "config.json": b'{"a": 2}', "added.txt": b"new"}
    del expected["deep/more.bin"]
    assert _read_tree(snapshot_download(repo)) == expected
    assert fake_hub.unexpected == []


def test_upload_to_other_branch_and_errors(fake_hub: FakeHub, tmp_path: Path):
    api = HfApi()
    repo = "someone/branchy"
    api.create_repo(repo)
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError):
        api.create_repo(repo)  # exists, exist_ok=False
    api.upload_file(path_or_fileobj=b"main", path_in_repo="f.txt", repo_id=repo)
    api.create_branch(repo, branch="dev")
    api.upload_file(path_or_fileobj=b"dev", path_in_repo="f.txt", repo_id=repo, revision="dev")
    assert Path(hf_hub_download(repo, "f.txt")).read_bytes() == b"main"
    assert Path(hf_hub_download(repo, "f.txt", revision="dev")).read_bytes() == b"dev"
    # branch names with a slash, file names with spaces / non-ASCII characters
    api.create_branch(repo, branch="feature/x", revision="dev")
    odd = "dir with space/naïve é.txt"
    api.upload_file(path_or_fileobj=b"odd", path_in_repo=odd, repo_id=repo, revision="feature/x")
    assert Path(hf_hub_download(repo, odd, revision="feature/x")).read_bytes() == b"odd"
    assert _read_tree(snapshot_download(repo, revision="feature/x")) == {"f.txt": b"dev", odd: b"odd"}
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo, odd, revision="dev")
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="f.txt", repo_id=repo, revision="nope")
    with pytest.raises(RepositoryNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="f.txt", repo_id="someone/nothere")
    assert fake_hub.unexpected == []


def test_unexpected_request_is_logged(fake_hub: FakeHub, capsys):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(fake_hub.url + "/api/datasets/acme/tiny")
    assert err.value.code == 404
    err.value.close()
    assert fake_hub.unexpected == ["GET /api/datasets/acme/tiny"]
    assert "[FakeHub] unexpected request: GET /api/datasets/acme/tiny" in capsys.readouterr().err


def test_subprocess_uses_env(seeded: FakeHub):
    code = "from huggingface_hub import hf_hub_download; print(open(hf_hub_download('acme/tiny', 'config.json')).read())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == MAIN_FILES["config.json"].decode()


def test_start_stop_is_clean(tmp_path: Path):
    before = {t for t in threading.enumerate()}
    with FakeHub(tmp_path / "repos") as hub:
        hub.add_repo(REPO, _write_tree(tmp_path / "src", {"a.txt": b"a"}))
        port = int(hub.url.rsplit(":", 1)[1])
        # keep-alive connection left open by the client must not block stop()
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(f"GET /{REPO}/resolve/main/a.txt HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        reply = b""
        while not reply.endswith(b"\r\n\r\na"):
            reply += conn.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200 OK")
    leftover = [t for t in threading.enumerate() if t not in before and t.name.startswith("FakeHub")]
    assert leftover == []
    conn.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(RuntimeError):
        hub.url  # noqa: B018


def test_resolve_headers_and_range(seeded: FakeHub):
    url = f"{seeded.url}/{REPO}/resolve/main/weights.bin"
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as resp:
        assert resp.headers["X-Repo-Commit"] == seeded.commit_sha(REPO)
        assert resp.headers["ETag"].strip('"') and resp.headers["Content-Length"] == "256"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=10-19"})) as resp:
        assert resp.status == 206 and resp.headers["Content-Range"] == "bytes 10-19/256"
        assert resp.read() == BINARY[10:20]
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=250-"})) as resp:
        assert resp.read() == BINARY[250:]
