"""A small in-memory server speaking the Hugging Face Hub protocol, for tests and benchmarks.

It implements what `huggingface_hub.HfApi` sends for repo creation, preupload, LFS upload,
commits, repo info, tree listings and file resolution (DESIGN section 3). It does not speak Xet:
clients must run with `HF_HUB_DISABLE_XET=1` (read by huggingface_hub at import time).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors", ".gz", ".zst", ".zip", ".npy")
_LFS_SIZE = 10 * 1024 * 1024
_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_INITIAL_GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"


@dataclass
class Blob:
    """A file in a commit: its bytes and, for LFS files, the sha256 the commit named."""

    content: bytes
    lfs_sha256: str | None = None

    @property
    def git_oid(self) -> str:
        data = self.pointer() if self.lfs_sha256 else self.content
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def pointer(self) -> bytes:
        return (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.lfs_sha256}\n"
            f"size {len(self.content)}\n"
        ).encode()


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, Blob]
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)


class HubState:
    """Repositories, LFS objects and fault injection, shared by the request handler threads."""

    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str]] = []
        self.auth_headers_seen: set[str] = set()
        self._faults: dict[str, list[str]] = {}
        self._hooks: dict[str, list[Callable[[], object]]] = {}
        self._counter = 0

    def fail_next(self, endpoint: str, times: int = 1, mode: str = "500") -> None:
        """Make the next `times` requests to `endpoint` (e.g. "commit", "lfs_put") fail.

        `mode` is "500" (an internal error reply) or "drop" (close the socket without a reply).
        """
        if mode not in ("500", "drop"):
            raise ValueError(f"fault mode must be '500' or 'drop', got {mode!r}")
        self._check_endpoint(endpoint)
        with self.lock:
            self._faults.setdefault(endpoint, []).extend([mode] * times)

    def on_next(self, endpoint: str, action: Callable[[], object]) -> None:
        """Run `action` (e.g. another client's commit) once, before the next `endpoint` request."""
        self._check_endpoint(endpoint)
        with self.lock:
            self._hooks.setdefault(endpoint, []).append(action)

    def take_hook(self, endpoint: str) -> Callable[[], object] | None:
        with self.lock:
            queue = self._hooks.get(endpoint)
            return queue.pop(0) if queue else None

    @staticmethod
    def _check_endpoint(endpoint: str) -> None:
        names = [name for _, _, name in _ROUTES]
        if endpoint not in names:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {names}")

    def take_fault(self, endpoint: str) -> str | None:
        with self.lock:
            queue = self._faults.get(endpoint)
            return queue.pop(0) if queue else None

    def new_commit(self, repo: Repo, parent: str | None, message: str, files: dict[str, Blob]):
        with self.lock:
            self._counter += 1
            seed = f"{repo.repo_id}\0{parent}\0{message}\0{self._counter}\0{time.time_ns()}"
            oid = hashlib.sha1(seed.encode()).hexdigest()
            date = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            repo.commits[oid] = Commit(oid, parent, message, files, date)
            return repo.commits[oid]

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> tuple[Repo, bool]:
        with self.lock:
            key = (repo_type, repo_id)
            if key in self.repos:
                return self.repos[key], False
            repo = Repo(repo_type, repo_id, private)
            first = self.new_commit(
                repo, None, "initial commit", {".gitattributes": Blob(_INITIAL_GITATTRIBUTES)}
            )
            repo.branches["main"] = first.oid
            self.repos[key] = repo
            return repo, True

    def head(self, repo_type: str, repo_id: str, revision: str = "main") -> str | None:
        """The commit sha a revision resolves to (None when the repo or revision is unknown)."""
        with self.lock:
            repo = self.repos.get((repo_type, repo_id))
            return None if repo is None else _resolve(repo, revision)


def _resolve(repo: Repo, revision: str) -> str | None:
    revision = unquote(revision)
    if revision in repo.branches:
        return repo.branches[revision]
    if revision in repo.commits:
        return revision
    if len(revision) >= 7:
        matches = [oid for oid in repo.commits if oid.startswith(revision)]
        if len(matches) == 1:
            return matches[0]
    return None


def _is_lfs(path: str, size: int, sample: bytes) -> bool:
    return path.endswith(_LFS_SUFFIXES) or size >= _LFS_SIZE or b"\0" in sample


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        # Request logs would clutter test output; the state keeps a list of requests instead.
        pass

    @property
    def state(self) -> HubState:
        return self.server.state

    # ---- plumbing -------------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        head = self.command == "HEAD"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if not head or "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(0 if head and status >= 400 else len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers=headers)

    def _drop(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization")
        if auth:
            with self.state.lock:
                self.state.auth_headers_seen.add(auth)
        if self.state.token is None:
            return True
        return auth == f"Bearer {self.state.token}"

    def _repo(self, type_plural: str, repo_id: str) -> Repo | None:
        repo = self.state.repos.get((_TYPES.get(type_plural, ""), repo_id))
        if repo is None or (repo.private and not self._authorised()):
            self._error(404, "Repository not found", "RepoNotFound")
            return None
        return repo

    def _repo_commit(
        self, type_plural: str, repo_id: str, revision: str
    ) -> tuple[Repo, Commit] | None:
        repo = self._repo(type_plural, repo_id)
        if repo is None:
            return None
        oid = _resolve(repo, revision)
        if oid is None:
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return None
        return repo, repo.commits[oid]

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        with self.state.lock:
            self.state.requests.append((method, parts.path))
        for pattern, handler_method, name in _ROUTES:
            if handler_method != method and not (handler_method == "GET" and method == "HEAD"):
                continue
            match = pattern.fullmatch(path)
            if match:
                hook = self.state.take_hook(name)
                if hook is not None:
                    hook()
                fault = self.state.take_fault(name)
                if fault == "drop":
                    self._body()
                    self._drop()
                    return
                if fault == "500":
                    self._body()
                    self._error(500, f"injected failure of {name}")
                    return
                getattr(self, "_" + name)(method, query, **match.groupdict())
                return
        self._error(404, f"no route for {method} {path}")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # ---- endpoints ------------------------------------------------------------------------

    def _create_repo(self, method, query) -> None:
        payload = json.loads(self._body() or b"{}")
        if not self._authorised() or not self.headers.get("Authorization"):
            self._error(401, "Invalid credentials in Authorization header")
            return
        name, org = payload.get("name"), payload.get("organization")
        repo_id = f"{org}/{name}" if org else f"user/{name}"
        repo_type = payload.get("type") or "model"
        private = payload.get("private") or payload.get("visibility") == "private"
        repo, created = self.state.create_repo(repo_type, repo_id, bool(private))
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.server.url}/{prefix}{repo_id}"
        if created:
            self._json(200, {"url": url, "name": repo_id, "id": repo_id})
        else:
            self._json(409, {"error": "You already created this repo", "url": url})

    def _validate_yaml(self, method, query) -> None:
        import yaml

        payload = json.loads(self._body() or b"{}")
        content = payload.get("content", "")
        match = re.match(r"^---\n(.*?)\n---", content, re.S)
        try:
            if match:
                yaml.safe_load(match.group(1))
        except yaml.YAMLError as exc:
            self._json(400, {"error": "invalid yaml", "errors": [{"message": str(exc)}]})
            return
        self._json(200, {"errors": [], "warnings": []})

    def _preupload(self, method, query, tp, repo_id, rev) -> None:
        payload = json.loads(self._body() or b"{}")
        found = self._repo_commit(tp, repo_id, rev)
        if found is None:
            return
        repo, commit = found
        files = []
        for item in payload.get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            lfs = _is_lfs(item["path"], int(item.get("size", 0)), sample)
            existing = commit.files.get(item["path"])
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": existing.git_oid if existing else None,
                }
            )
        self._json(200, {"files": files, "commitOid": commit.oid})

    def _lfs_batch(self, method, query, tp, repo_id) -> None:
        payload = json.loads(self._body() or b"{}")
        if self._repo(tp, repo_id) is None:
            return
        if not self._authorised():
            self._error(401, "Invalid credentials in Authorization header")
            return
        objects = []
        for obj in payload.get("objects", []):
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.state.lfs:
                href = f"{self.server.url}/__lfs/{obj['oid']}"
                entry["actions"] = {
                    "upload": {"href": href},
                    "verify": {"href": f"{href}/verify"},
                }
            objects.append(entry)
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects}).encode(),
            content_type="application/vnd.git-lfs+json",
        )

    def _lfs_put(self, method, query, oid) -> None:
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            self._error(400, f"sha256 of the uploaded bytes does not match {oid}")
            return
        with self.state.lock:
            self.state.lfs[oid] = data
        self._send(200)

    def _lfs_verify(self, method, query, oid) -> None:
        self._body()
        if oid not in self.state.lfs:
            self._error(404, f"LFS object {oid} was not uploaded")
            return
        self._json(200, {"success": True})

    def _commit(self, method, query, tp, repo_id, rev) -> None:
        body = self._body()
        repo = self._repo(tp, repo_id)
        if repo is None:
            return
        if not self._authorised():
            self._error(401, "Invalid credentials in Authorization header")
            return
        branch = unquote(rev)
        if branch not in repo.branches:
            self._error(404, f"Invalid rev id: {branch} is not a branch", "RevisionNotFound")
            return
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            self._error(400, "commit payload must start with a header line")
            return
        header = lines[0]["value"]
        with self.state.lock:
            parent = repo.branches[branch]
            wanted = header.get("parentCommit")
            if wanted and not parent.startswith(wanted):
                self._error(412, f"A commit has happened since. Parent is {parent}, not {wanted}")
                return
            files = dict(repo.commits[parent].files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                if key == "file":
                    files[value["path"]] = Blob(base64.b64decode(value["content"]))
                elif key == "lfsFile":
                    data = self.state.lfs.get(value["oid"])
                    if data is None:
                        self._error(400, f"LFS object {value['oid']} for {value['path']} missing")
                        return
                    files[value["path"]] = Blob(data, lfs_sha256=value["oid"])
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        self._error(404, f"cannot delete {value['path']}: not in the repo")
                        return
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(prefix)}
                else:
                    self._error(400, f"unknown commit operation {key!r}")
                    return
            commit = self.state.new_commit(repo, parent, header.get("summary", ""), files)
            repo.branches[branch] = commit.oid
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        self._json(
            200,
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.server.url}/{prefix}{repo.repo_id}/commit/{commit.oid}",
                "pullRequestUrl": None,
            },
        )

    def _repo_info(self, method, query, tp, repo_id, rev=None) -> None:
        found = self._repo_commit(tp, repo_id, rev or "main")
        if found is None:
            return
        repo, commit = found
        siblings = [
            {"rfilename": path, "size": len(blob.content), "blobId": blob.git_oid}
            | (
                {
                    "lfs": {
                        "sha256": blob.lfs_sha256,
                        "size": len(blob.content),
                        "pointerSize": len(blob.pointer()),
                    }
                }
                if blob.lfs_sha256
                else {}
            )
            for path, blob in sorted(commit.files.items())
        ]
        self._json(
            200,
            {
                "id": repo.repo_id,
                "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
                "author": repo.repo_id.split("/")[0],
                "sha": commit.oid,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "lastModified": commit.date,
                "createdAt": commit.date,
                "tags": [],
                "downloads": 0,
                "likes": 0,
                "siblings": siblings,
                "cardData": {},
            },
        )

    def _entries(self, commit: Commit, base: str, recursive: bool) -> list[dict[str, Any]]:
        base = base.strip("/")
        prefix = base + "/" if base else ""
        seen_dirs: set[str] = set()
        out = []
        for path, blob in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                directory = prefix + "/".join(parts[:depth])
                if directory not in seen_dirs and (recursive or depth == 1):
                    seen_dirs.add(directory)
                    out.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": directory})
            if recursive or len(parts) == 1:
                out.append(_file_entry(path, blob))
        return out

    def _tree(self, method, query, tp, repo_id, rev, path="") -> None:
        found = self._repo_commit(tp, repo_id, rev)
        if found is None:
            return
        repo, commit = found
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        base = (path or "").strip("/")
        if base and base in commit.files:
            self._json(200, [_file_entry(base, commit.files[base])])
            return
        entries = self._entries(commit, base, recursive)
        if base and not entries:
            self._error(404, f"{base} does not exist at {rev}", "EntryNotFound")
            return
        self._json(200, entries)

    def _paths_info(self, method, query, tp, repo_id, rev) -> None:
        body = self._body()
        found = self._repo_commit(tp, repo_id, rev)
        if found is None:
            return
        repo, commit = found
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body or b"{}").get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        out = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                out.append(_file_entry(path, commit.files[path]))
            elif any(p.startswith(path + "/") for p in commit.files):
                out.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": path})
        self._json(200, out)

    def _resolve_file(self, method, query, tp, repo_id, rev, path) -> None:
        found = self._repo_commit(tp, repo_id, rev)
        if found is None:
            return
        repo, commit = found
        blob = commit.files.get(path)
        if blob is None:
            self._error(404, f"Entry not found: {path}", "EntryNotFound")
            return
        etag = blob.lfs_sha256 or blob.git_oid
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if blob.lfs_sha256:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(len(blob.content))
        data, status = blob.content, 200
        ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "") or "")
        if ranged and data:
            start_s, end_s = ranged.groups()
            if start_s:
                start = int(start_s)
                end = min(int(end_s), len(data) - 1) if end_s else len(data) - 1
            else:
                start, end = max(0, len(data) - int(end_s)), len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        headers["Content-Length"] = str(len(data))
        self._send(status, data, content_type="application/octet-stream", headers=headers)

    def _refs(self, method, query, tp, repo_id) -> None:
        repo = self._repo(tp, repo_id)
        if repo is None:
            return
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
            for name, oid in repo.branches.items()
        ]
        self._json(200, {"branches": branches, "tags": [], "converts": []})

    def _commits(self, method, query, tp, repo_id, rev) -> None:
        found = self._repo_commit(tp, repo_id, rev)
        if found is None:
            return
        repo, commit = found
        out = []
        while commit is not None:
            out.append(
                {
                    "id": commit.oid,
                    "title": commit.message,
                    "message": "",
                    "authors": [{"user": "user"}],
                    "date": commit.date,
                }
            )
            commit = repo.commits.get(commit.parent) if commit.parent else None
        self._json(200, out)

    def _xet_token(self, method, query, tp, repo_id) -> None:
        self._error(
            501,
            "this test Hub does not speak Xet: set HF_HUB_DISABLE_XET=1 before huggingface_hub "
            "is imported (or set huggingface_hub.constants.HF_HUB_DISABLE_XET = True)",
        )

    def _whoami(self, method, query) -> None:
        if not self._authorised() or not self.headers.get("Authorization"):
            self._error(401, "Invalid credentials in Authorization header")
            return
        self._json(200, {"type": "user", "name": "user", "orgs": [], "auth": {}})


def _file_entry(path: str, blob: Blob) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "file",
        "oid": blob.git_oid,
        "size": len(blob.content),
        "path": path,
    }
    if blob.lfs_sha256:
        entry["lfs"] = {
            "oid": blob.lfs_sha256,
            "size": len(blob.content),
            "pointerSize": len(blob.pointer()),
        }
    return entry


_REPO = r"/api/(?P<tp>models|datasets|spaces)/(?P<repo_id>[^/]+/[^/]+)"
_ROUTES = [
    (re.compile(r"/api/repos/create"), "POST", "create_repo"),
    (re.compile(r"/api/validate-yaml"), "POST", "validate_yaml"),
    (re.compile(r"/api/whoami-v2"), "GET", "whoami"),
    (re.compile(_REPO + r"/preupload/(?P<rev>[^/]+)"), "POST", "preupload"),
    (re.compile(_REPO + r"/commit/(?P<rev>[^/]+)"), "POST", "commit"),
    (re.compile(_REPO + r"/paths-info/(?P<rev>[^/]+)"), "POST", "paths_info"),
    (re.compile(_REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"), "GET", "tree"),
    (re.compile(_REPO + r"/refs"), "GET", "refs"),
    (re.compile(_REPO + r"/xet-(?:read|write)-token(?:/.*)?"), "GET", "xet_token"),
    (re.compile(_REPO + r"/commits/(?P<rev>[^/]+)"), "GET", "commits"),
    (re.compile(_REPO + r"(?:/revision/(?P<rev>[^/]+))?"), "GET", "repo_info"),
    (
        re.compile(
            r"/(?P<tp>datasets|spaces)/(?P<repo_id>[^/]+/[^/]+)\.git/info/lfs/objects/batch"
        ),
        "POST",
        "lfs_batch",
    ),
    (re.compile(r"/__lfs/(?P<oid>[0-9a-f]{64})"), "PUT", "lfs_put"),
    (re.compile(r"/__lfs/(?P<oid>[0-9a-f]{64})/verify"), "POST", "lfs_verify"),
    (
        re.compile(
            r"/(?P<tp>datasets|spaces)/(?P<repo_id>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)"
        ),
        "GET",
        "resolve_file",
    ),
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState
    url: str


class HubTestServer:
    """The server on 127.0.0.1 (a free port by default); use as a context manager."""

    def __init__(self, token: str | None = None, port: int = 0):
        self.state = HubState(token=token)
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("HubTestServer is not started; call start() or use `with`")
        return self._server.url

    def start(self) -> HubTestServer:
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.state = self.state
        server.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="hub-test-server")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HubTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset"):
        """The files of a repo at a revision, as {path: bytes}."""
        with self.state.lock:
            repo = self.state.repos[(repo_type, repo_id)]
            oid = _resolve(repo, revision)
            if oid is None:
                raise KeyError(f"revision {revision!r} not in {repo_id}")
            return {path: blob.content for path, blob in repo.commits[oid].files.items()}

    def glob(self, repo_id: str, pattern: str, revision: str = "main") -> list[str]:
        return sorted(p for p in self.files(repo_id, revision) if fnmatch.fnmatch(p, pattern))


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted: `python -m tests.testing_hub --port 8080`."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--require-token-env",
        metavar="VAR",
        help="accept writes only with the token held in this environment variable",
    )
    args = parser.parse_args(argv)
    token = os.environ.get(args.require_token_env) if args.require_token_env else None
    server = HubTestServer(token=token, port=args.port).start()
    print(
        f"test Hub listening on {server.url} (in memory; clients need HF_HUB_DISABLE_XET=1)",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
