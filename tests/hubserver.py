"""A small fake Hugging Face Hub server for tests (model repos only).

Dependency-free (stdlib ``http.server`` + ``threading``). It speaks enough of the Hub HTTP API for the real
``huggingface_hub`` client to download (``hf_hub_download``, ``snapshot_download``, ``HfApi.model_info``,
``list_repo_tree``, ...) and push (``create_repo``, ``upload_folder``, ``create_commit``) when ``HF_ENDPOINT``
points at it.

Storage lives on disk under ``root``::

    root/<owner>/<name>/...                              content of the "main" branch
    root/.fakehub/revisions/<owner>/<name>/<rev>/...    content of any other revision (``rev`` url-quoted)

Commit shas are derived from the content of a revision (sha1 over the sorted ``path -> git blob oid`` list), so
they change whenever the content changes and a commit sha resolves to whichever revision currently holds that
content (older commits are not kept). All uploads are answered with upload mode "regular", so file contents
arrive inline (base64) in the ndjson commit payload: no LFS / Xet transfer is ever needed.

Any request the server does not know is answered ``404`` and logged to stderr (``[FakeHub] unexpected request``)
and recorded in ``FakeHub.unexpected``. Set ``FAKE_HUB_VERBOSE=1`` to log every request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import threading
import traceback
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

DEFAULT_USER = "fake-user"
DEFAULT_TOKEN = "hf_fake_token_for_tests"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_INTERNAL_DIR = ".fakehub"


class HubError(Exception):
    """An error answered to the client as ``{"error": message}`` with ``X-Error-Code`` when given."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _split_repo_id(repo_id: str) -> tuple[str, str]:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME_RE.match(p) for p in parts):
        raise ValueError(f"FakeHub needs repo ids of the form 'owner/name', got {repo_id!r}")
    return parts[0], parts[1]


def _clean_repo_path(path: str) -> str:
    path = path.strip("/")
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") for p in parts) or "\\" in path or "\0" in path:
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


class _Store:
    """Disk-backed repos, guarded by one lock."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self._oid_cache: dict[str, tuple[tuple[int, int, int, int], str]] = {}
        self.tags: dict[str, set[str]] = {}

    # -- layout ----------------------------------------------------------------------------------------------------
    def repo_dir(self, repo_id: str) -> Path:
        owner, name = _split_repo_id(repo_id)
        return self.root / owner / name

    def _revisions_dir(self, repo_id: str) -> Path:
        owner, name = _split_repo_id(repo_id)
        return self.root / _INTERNAL_DIR / "revisions" / owner / name

    def rev_dir(self, repo_id: str, revision: str) -> Path:
        if revision == "main":
            return self.repo_dir(repo_id)
        return self._revisions_dir(repo_id) / quote(revision, safe="")

    def exists(self, repo_id: str) -> bool:
        try:
            return self.repo_dir(repo_id).is_dir()
        except ValueError:
            return False

    def require_repo(self, repo_id: str, authenticated: bool = True) -> None:
        if not self.exists(repo_id):
            # Like the real Hub: 401 for anonymous callers, 404 for authenticated ones.
            raise HubError(404 if authenticated else 401, "Repository not found", "RepoNotFound")

    def revisions(self, repo_id: str) -> dict[str, Path]:
        revs = {"main": self.repo_dir(repo_id)}
        rdir = self._revisions_dir(repo_id)
        if rdir.is_dir():
            for child in sorted(rdir.iterdir()):
                if child.is_dir():
                    revs[unquote(child.name)] = child
        return revs

    # -- content -----------------------------------------------------------------------------------------------------
    def files(self, folder: Path) -> dict[str, Path]:
        out: dict[str, Path] = {}
        if not folder.is_dir():
            return out
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            for fname in filenames:
                full = Path(dirpath) / fname
                out[full.relative_to(folder).as_posix()] = full
        return dict(sorted(out.items()))

    def blob_oid(self, path: Path) -> str:
        st = path.stat()
        stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        cached = self._oid_cache.get(str(path))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        oid = _git_blob_oid(path.read_bytes())
        self._oid_cache[str(path)] = (stamp, oid)
        return oid

    def commit_sha(self, folder: Path) -> str:
        h = hashlib.sha1(b"fakehub-commit\n")
        for rel, full in self.files(folder).items():
            h.update(f"{rel}\0{self.blob_oid(full)}\n".encode())
        return h.hexdigest()

    def resolve(self, repo_id: str, revision: str) -> tuple[str, str, Path]:
        """Return ``(commit_sha, branch_or_tag_name, folder)`` for a revision name or a commit sha."""
        revs = self.revisions(repo_id)
        if revision in revs:
            return self.commit_sha(revs[revision]), revision, revs[revision]
        if _SHA_RE.match(revision):
            for name, folder in revs.items():
                if self.commit_sha(folder) == revision:
                    return revision, name, folder
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def last_modified(self, folder: Path) -> str:
        mtimes = [p.stat().st_mtime for p in self.files(folder).values()] or [folder.stat().st_mtime]
        return _iso(max(mtimes))

    # -- mutations -----------------------------------------------------------------------------------------------
    def set_revision_content(self, repo_id: str, revision: str, folder: Path) -> None:
        target = self.rev_dir(repo_id, revision)
        main = self.repo_dir(repo_id)
        main.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(folder, target, ignore=shutil.ignore_patterns(".git"))
        self._oid_cache.clear()

    def copy_revision(self, repo_id: str, src: Path, revision: str) -> None:
        target = self.rev_dir(repo_id, revision)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, target)
        self._oid_cache.clear()


def _file_entry(store: _Store, rel: str, full: Path, last_commit: dict | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": store.blob_oid(full), "size": full.stat().st_size, "path": rel}
    if last_commit is not None:
        entry["lastCommit"] = last_commit
    return entry


def _dir_entry(path: str, last_commit: dict | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "directory", "oid": hashlib.sha1(f"tree {path}".encode()).hexdigest(), "path": path}
    if last_commit is not None:
        entry["lastCommit"] = last_commit
    return entry


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # we track and join connection threads ourselves (with a timeout)
    allow_reuse_address = True

    def __init__(self, addr, handler, hub: "FakeHub"):
        self.hub = hub
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._conns_lock = threading.Lock()
        self.stopping = False
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        t = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), name="FakeHub-conn", daemon=True
        )
        with self._conns_lock:
            self._conns[request] = t
        t.start()

    def shutdown_request(self, request):
        with self._conns_lock:
            self._conns.pop(request, None)
        super().shutdown_request(request)

    def close_connections(self, timeout: float = 5.0) -> None:
        with self._conns_lock:
            items = list(self._conns.items())
        for sock, _ in items:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, t in items:
            t.join(timeout)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if self.stopping or isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"
    timeout = 60  # idle keep-alive connections are dropped after this many seconds
    server: _Server

    # -- plumbing ------------------------------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if os.environ.get("FAKE_HUB_VERBOSE"):
            sys.stderr.write("[FakeHub] " + (format % args) + "\n")

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json; charset=utf-8", content_length: int | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, err: HubError) -> None:
        headers = dict(err.headers)
        if err.code:
            headers["X-Error-Code"] = err.code
        headers["X-Error-Message"] = " ".join(err.message.split()).encode("ascii", "replace").decode()
        self._json({"error": err.message}, status=err.status, headers=headers)

    def _unexpected(self, method: str, path: str) -> None:
        line = f"{method} {path}"
        self.server.hub.unexpected.append(line)
        sys.stderr.write(f"[FakeHub] unexpected request: {line} -> 404\n")
        sys.stderr.flush()
        self._json({"error": f"FakeHub does not implement {line}"}, status=404)

    @property
    def _authenticated(self) -> bool:
        return bool(self.headers.get("Authorization"))

    def _dispatch(self) -> None:
        hub = self.server.hub
        body = self._read_body()
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        raw = [s for s in split.path.split("/") if s != ""]
        hub.requests.append(f"{self.command} {self.path}")
        try:
            with hub.store.lock:
                handled = self._route(self.command, raw, query, body)
            if not handled:
                self._unexpected(self.command, self.path)
        except HubError as err:
            self._error(err)
        except (ConnectionError, TimeoutError):  # client went away (or server stopping): nothing to answer
            self.close_connection = True
        except Exception as exc:  # a bug in the fake: make it loud
            sys.stderr.write(f"[FakeHub] internal error on {self.command} {self.path}:\n{traceback.format_exc()}")
            sys.stderr.flush()
            self._error(HubError(500, f"FakeHub internal error: {exc!r}"))

    # -- routing -------------------------------------------------------------------------------------------------------
    def _route(self, method: str, raw: list[str], query: dict[str, str], body: bytes) -> bool:
        seg = [unquote(s) for s in raw]
        if len(seg) >= 1 and seg[0] == "api":
            if seg[1:] == ["whoami-v2"] and method == "GET":
                self._whoami()
                return True
            if seg[1:] == ["repos", "create"] and method == "POST":
                self._create_repo(body)
                return True
            if seg[1:] == ["repos", "delete"] and method == "DELETE":
                self._delete_repo(body)
                return True
            if seg[1:] == ["validate-yaml"] and method == "POST":
                self._json({"errors": [], "warnings": []})
                return True
            if len(seg) >= 4 and seg[1] == "models":
                return self._route_model_api(method, raw[4:], seg[2] + "/" + seg[3], query, body)
            return False
        # /{owner}/{name}/resolve/{revision}/{path...}
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            repo_id = f"{seg[0]}/{seg[1]}"
            self._resolve(repo_id, seg[3], unquote("/".join(raw[4:])))
            return True
        return False

    def _route_model_api(self, method: str, rest: list[str], repo_id: str, query: dict[str, str], body: bytes) -> bool:
        try:
            _split_repo_id(repo_id)
        except ValueError:
            raise HubError(404 if self._authenticated else 401, "Repository not found", "RepoNotFound")
        rest_seg = [unquote(s) for s in rest]
        if method == "GET" and not rest_seg:
            self._model_info(repo_id, "main", query)
            return True
        if not rest_seg:
            return False
        kind = rest_seg[0]
        if method == "GET" and kind == "revision" and len(rest_seg) == 2:
            self._model_info(repo_id, rest_seg[1], query)
            return True
        if method == "GET" and kind == "tree" and len(rest_seg) >= 2:
            self._tree(repo_id, rest_seg[1], unquote("/".join(rest[2:])), query)
            return True
        if method == "GET" and kind == "refs" and len(rest_seg) == 1:
            self._refs(repo_id)
            return True
        if method == "POST" and kind == "paths-info" and len(rest_seg) == 2:
            self._paths_info(repo_id, rest_seg[1], body)
            return True
        if method == "POST" and kind == "preupload" and len(rest_seg) == 2:
            self._preupload(repo_id, rest_seg[1], body)
            return True
        if method == "POST" and kind == "commit" and len(rest_seg) == 2:
            self._commit(repo_id, rest_seg[1], query, body)
            return True
        if method == "POST" and kind == "branch" and len(rest_seg) >= 2:
            self._create_branch(repo_id, "/".join(rest_seg[1:]), body)
            return True
        if method == "POST" and kind == "tag" and len(rest_seg) == 2:
            self._create_tag(repo_id, rest_seg[1], body)
            return True
        return False

    # -- endpoints -----------------------------------------------------------------------------------------------------
    def _whoami(self) -> None:
        if not self._authenticated:
            raise HubError(401, "Invalid credentials in Authorization header")
        self._json({
            "type": "user", "id": "fake-user-id", "name": DEFAULT_USER, "fullname": "Fake User",
            "email": "fake@example.com", "emailVerified": True, "isPro": False, "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "fake", "role": "write"}},
        })

    def _create_repo(self, body: bytes) -> None:
        hub = self.server.hub
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        if repo_type != "model":
            raise HubError(400, f"FakeHub only supports model repos, got type={repo_type!r}")
        repo_id = f"{payload.get('organization') or DEFAULT_USER}/{payload['name']}"
        try:
            _split_repo_id(repo_id)
        except ValueError as exc:
            raise HubError(400, str(exc))
        url = f"{hub.url}/{repo_id}"
        if hub.store.exists(repo_id):
            self._json({"error": "You already created this model repo", "url": url}, status=409,
                       headers={"X-Error-Message": "You already created this model repo"})
            return
        hub.store.repo_dir(repo_id).mkdir(parents=True)
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self, body: bytes) -> None:
        hub = self.server.hub
        payload = json.loads(body or b"{}")
        repo_id = f"{payload.get('organization') or DEFAULT_USER}/{payload['name']}"
        hub.store.require_repo(repo_id, self._authenticated)
        shutil.rmtree(hub.store.repo_dir(repo_id))
        shutil.rmtree(hub.store._revisions_dir(repo_id), ignore_errors=True)
        self._send(200)

    def _model_info(self, repo_id: str, revision: str, query: dict[str, str]) -> None:
        store = self.server.hub.store
        store.require_repo(repo_id, self._authenticated)
        sha, _, folder = store.resolve(repo_id, revision)
        blobs = query.get("blobs", "").lower() in ("1", "true")
        siblings = []
        for rel, full in store.files(folder).items():
            sib: dict[str, Any] = {"rfilename": rel}
            if blobs:
                sib.update(size=full.stat().st_size, blobId=store.blob_oid(full))
            siblings.append(sib)
        owner = repo_id.split("/")[0]
        modified = store.last_modified(folder)
        self._json({
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
            "author": owner, "sha": sha, "lastModified": modified, "createdAt": modified,
            "private": False, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
            "tags": [], "siblings": siblings, "spaces": [],
        })

    def _last_commit(self, sha: str, folder: Path) -> dict[str, str]:
        return {"id": sha, "title": "FakeHub commit", "date": self.server.hub.store.last_modified(folder)}

    def _tree(self, repo_id: str, revision: str, path: str, query: dict[str, str]) -> None:
        store = self.server.hub.store
        store.require_repo(repo_id, self._authenticated)
        sha, _, folder = store.resolve(repo_id, revision)
        recursive = query.get("recursive", "").lower() in ("1", "true")
        last_commit = self._last_commit(sha, folder) if query.get("expand", "").lower() in ("1", "true") else None
        prefix = path.strip("/")
        files = store.files(folder)
        entries: dict[str, dict[str, Any]] = {}
        for rel, full in files.items():
            if prefix:
                if not rel.startswith(prefix + "/"):
                    continue
                sub = rel[len(prefix) + 1:]
            else:
                sub = rel
            parts = sub.split("/")
            base = prefix + "/" if prefix else ""
            if recursive:
                for i in range(1, len(parts)):
                    dpath = base + "/".join(parts[:i])
                    entries.setdefault(dpath, _dir_entry(dpath, last_commit))
                entries[rel] = _file_entry(store, rel, full, last_commit)
            elif len(parts) == 1:
                entries[rel] = _file_entry(store, rel, full, last_commit)
            else:
                dpath = base + parts[0]
                entries.setdefault(dpath, _dir_entry(dpath, last_commit))
        if prefix and not entries:
            raise HubError(404, f"{prefix} does not exist on {revision}", "EntryNotFound", {"X-Repo-Commit": sha})
        self._json([entries[k] for k in sorted(entries)])

    def _refs(self, repo_id: str) -> None:
        store = self.server.hub.store
        store.require_repo(repo_id, self._authenticated)
        tags = store.tags.get(repo_id, set())
        branches, tag_refs = [], []
        for name, folder in store.revisions(repo_id).items():
            sha = store.commit_sha(folder)
            if name in tags:
                tag_refs.append({"name": name, "ref": f"refs/tags/{name}", "targetCommit": sha})
            else:
                branches.append({"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha})
        self._json({"branches": branches, "converts": [], "tags": tag_refs, "pullRequests": []})

    def _paths_info(self, repo_id: str, revision: str, body: bytes) -> None:
        store = self.server.hub.store
        store.require_repo(repo_id, self._authenticated)
        sha, _, folder = store.resolve(repo_id, revision)
        form = parse_qs(body.decode())
        expand = form.get("expand", ["false"])[-1].lower() in ("1", "true")
        last_commit = self._last_commit(sha, folder) if expand else None
        files = store.files(folder)
        out = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in files:
                out.append(_file_entry(store, path, files[path], last_commit))
            elif any(rel.startswith(path + "/") for rel in files):
                out.append(_dir_entry(path, last_commit))
        self._json(out)

    def _preupload(self, repo_id: str, revision: str, body: bytes) -> None:
        store = self.server.hub.store
        store.require_repo(repo_id, self._authenticated)
        sha, _, folder = store.resolve(repo_id, revision)
        files = store.files(folder)
        out = []
        for f in json.loads(body or b"{}").get("files", []):
            path = f["path"]
            existing = files.get(path.strip("/"))
            out.append({
                "path": path, "uploadMode": "regular", "shouldIgnore": False,
                "oid": store.blob_oid(existing) if existing is not None else None,
            })
        self._json({"files": out, "commitOid": sha})

    def _commit(self, repo_id: str, revision: str, query: dict[str, str], body: bytes) -> None:
        hub = self.server.hub
        store = hub.store
        store.require_repo(repo_id, self._authenticated)
        if query.get("create_pr") in ("1", "true", "True"):
            raise HubError(400, "FakeHub does not support create_pr")
        if revision not in store.revisions(repo_id):
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        if revision in store.tags.get(repo_id, set()):
            raise HubError(400, f"Cannot commit to tag {revision}")
        folder = store.rev_dir(repo_id, revision)
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        # 1. validate every operation against a simulated file list, so a bad commit changes nothing
        present = set(store.files(folder))
        ops: list[tuple[str, str, bytes]] = []
        for item in lines:
            key, value = item.get("key"), item.get("value") or {}
            if key == "header":
                parent = value.get("parentCommit")
                if parent and parent != store.commit_sha(folder):
                    raise HubError(412, "A commit has happened since. Please refresh and try again.")
                continue
            if key not in ("file", "deletedFile", "deletedFolder"):
                raise HubError(400, f"FakeHub: unsupported commit operation {key!r} (LFS is not implemented)")
            path = _clean_repo_path(value["path"])
            if key == "file":
                encoding = value.get("encoding", "base64")
                if encoding != "base64":
                    raise HubError(400, f"FakeHub: unsupported file encoding {encoding!r}")
                if any(p.startswith(path + "/") for p in present):
                    raise HubError(400, f"{path} is a directory")
                parts = path.split("/")
                if any("/".join(parts[:i]) in present for i in range(1, len(parts))):
                    raise HubError(400, f"A parent folder of {path} is a file")
                ops.append((key, path, base64.b64decode(value.get("content", ""))))
                present.add(path)
            elif key == "deletedFile":
                if path not in present:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                ops.append((key, path, b""))
                present.discard(path)
            else:
                inside = {p for p in present if p.startswith(path + "/")}
                if not inside:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                ops.append((key, path, b""))
                present -= inside
        # 2. apply
        for key, path, content in ops:
            target = folder / path
            if key == "file":
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            elif key == "deletedFile":
                target.unlink()
            elif target.is_dir():
                shutil.rmtree(target)
        store._oid_cache.clear()
        # drop empty directories left behind by deletions
        for dirpath, _, _ in sorted(os.walk(folder), key=lambda x: -len(x[0])):
            if Path(dirpath) != folder and not os.listdir(dirpath):
                os.rmdir(dirpath)
        sha = store.commit_sha(folder)
        self._json({
            "success": True, "commitOid": sha, "commitUrl": f"{hub.url}/{repo_id}/commit/{sha}",
            "commitMessage": next((i["value"].get("summary") for i in lines if i.get("key") == "header"), ""),
            "hookOutput": "", "pullRequestUrl": None,
        })

    def _create_branch(self, repo_id: str, branch: str, body: bytes) -> None:
        store = self.server.hub.store
        store.require_repo(repo_id, self._authenticated)
        if branch in store.revisions(repo_id):
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = (json.loads(body or b"{}") or {}).get("startingPoint") or "main"
        _, _, src = store.resolve(repo_id, start)
        store.copy_revision(repo_id, src, branch)
        self._json({})

    def _create_tag(self, repo_id: str, revision: str, body: bytes) -> None:
        store = self.server.hub.store
        store.require_repo(repo_id, self._authenticated)
        tag = json.loads(body or b"{}")["tag"]
        if tag in store.revisions(repo_id):
            raise HubError(409, f"Reference already exists: refs/tags/{tag}")
        _, _, src = store.resolve(repo_id, revision)
        store.copy_revision(repo_id, src, tag)
        store.tags.setdefault(repo_id, set()).add(tag)
        self._json({})

    def _resolve(self, repo_id: str, revision: str, path: str) -> None:
        store = self.server.hub.store
        try:
            _split_repo_id(repo_id)
        except ValueError:
            raise HubError(404 if self._authenticated else 401, "Repository not found", "RepoNotFound")
        store.require_repo(repo_id, self._authenticated)
        sha, _, folder = store.resolve(repo_id, revision)
        path = path.strip("/")
        full = folder / path if path and ".." not in path.split("/") else None
        if full is None or not full.is_file():
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": sha})
        data = full.read_bytes()
        size = len(data)
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{store.blob_oid(full)}"',
            "Accept-Ranges": "bytes",
        }
        status = 200
        rng = self.headers.get("Range")
        if rng and self.command == "GET":
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = int(m.group(2)) if m.group(2) else size - 1
                else:  # suffix range
                    start, end = max(size - int(m.group(2)), 0), size - 1
                end = min(end, size - 1)
                if start >= size or start > end:
                    headers["Content-Range"] = f"bytes */{size}"
                    self._send(416, b"", headers, content_type="application/octet-stream")
                    return
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
                data = data[start:end + 1]
                status = 206
        self._send(status, data, headers, content_type="application/octet-stream", content_length=len(data))


class FakeHub:
    """A fake Hugging Face Hub on 127.0.0.1 (model repos only). See the module docstring."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0):
        self.root = Path(root)
        self.store = _Store(self.root)
        self.host = host
        self.port = port
        self.requests: list[str] = []  # "METHOD /path?query" of every request received
        self.unexpected: list[str] = []  # requests answered 404 because no route matched
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeHub is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> "FakeHub":
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeHub-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.stopping = True
        server.shutdown()  # stops serve_forever
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- content -------------------------------------------------------------------------------------------------
    def add_repo(self, repo_id: str, folder: Path, revision: str = "main") -> None:
        """Copy ``folder`` in as the content of ``repo_id`` at ``revision`` (replacing what was there).

        Adding a non-"main" revision to an unknown repo also creates the repo with an empty "main".
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise NotADirectoryError(folder)
        with self.store.lock:
            self.store.set_revision_content(repo_id, revision, folder)

    def repo_path(self, repo_id: str, revision: str = "main") -> Path:
        """Folder holding the current content of ``repo_id`` at ``revision`` (e.g. to inspect a push)."""
        return self.store.rev_dir(repo_id, revision)

    def commit_sha(self, repo_id: str, revision: str = "main") -> str:
        with self.store.lock:
            return self.store.resolve(repo_id, revision)[0]


# -- client configuration -------------------------------------------------------------------------------------------
# huggingface_hub reads HF_ENDPOINT and HF_HOME once, at import: tests/conftest.py sets them (to a port reserved for
# this server and a scratch home) before anything imports it, so no private state of the client is touched here.


def reserve_port() -> int:
    """A free loopback port for the fake Hub, reserved before huggingface_hub is imported."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A started :class:`FakeHub` on ``$HF_ENDPOINT`` with a token in the environment, stopped afterwards."""
    from huggingface_hub import close_session

    endpoint = urlsplit(os.environ["HF_ENDPOINT"])
    if endpoint.hostname != "127.0.0.1" or not endpoint.port:
        pytest.skip("HF_ENDPOINT does not point at the loopback port tests/conftest.py reserved")
    monkeypatch.setenv("HF_TOKEN", DEFAULT_TOKEN)  # read at every call
    close_session()  # pooled connections may still point at the previous test's server on this port
    hub = FakeHub(tmp_path / "fake_hub_repos", port=endpoint.port).start()
    try:
        yield hub
    finally:
        close_session()
        hub.stop()
