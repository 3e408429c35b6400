"""A Hugging Face Hub test double: an in-memory, Hub-compatible HTTP server on 127.0.0.1 (standard library only).

It speaks the parts of the Hub's HTTP API that ``huggingface_hub`` (2.4), Diffusers and ``datasets`` (5.2:
``Dataset.push_to_hub``, ``load_dataset`` of a dataset id, with or without a config name) use to create repos, upload
(regular commits and Git LFS "basic" transfers), list, inspect and download, so tests can exercise real client code
without the network::

    with HubServer(tokens={"hf_test_token": "user"}) as server:
        api = huggingface_hub.HfApi(endpoint=server.url, token="hf_test_token")
        api.create_repo("user/demo")
        ...

The ``hub`` fixture in ``tests/conftest.py`` starts one per test and points ``huggingface_hub``, Diffusers and
``datasets`` at it (:func:`point_clients_at`).

What it models, like the real Hub:

- repos (models, datasets, spaces) keyed ``"namespace/name"`` (``"datasets/namespace/name"`` for datasets, ...), each
  with branches and tags pointing at commits; a commit's sha is the sha1 of its content (parent, message, author,
  date, file tree). A new repo starts with the Hub's "initial commit" holding a ``.gitattributes`` file, so the file
  list of a fresh upload is the uploaded files plus ``.gitattributes``, exactly as on huggingface.co.
- files are regular git blobs (``ETag`` = git blob sha1) or LFS objects (``X-Linked-Etag`` = sha256): the preupload
  endpoint says "lfs" for paths matched by a ``filter=lfs`` line of the repo's ``.gitattributes`` (``*.safetensors``,
  ``*.bin``, ...), for binary samples (a NUL byte) and for files of ``lfs_threshold`` bytes (10 MiB) or more.
- tokens: ``tokens`` maps a bearer token to a user name. A token that is sent but unknown is refused everywhere with
  401 and ``X-Error-Message: Invalid credentials in Authorization header``. Writes need a token whose user owns the
  repo's namespace (401 without a token, 403 with another user's). A private repo (or one that does not exist) is
  "Repository not found" (``X-Error-Code: RepoNotFound``) for anyone but its owner: 401 without a token, 404 with one;
  ``huggingface_hub`` raises ``RepositoryNotFoundError`` for both.

What it leaves out: Xet storage (point clients at it with Xet disabled: the ``hub`` fixture does), pull requests,
gated repos, multipart LFS uploads, CDN redirects (LFS files are served directly by ``/resolve`` with the ``X-Linked-*``
headers a redirect would carry), pagination (listings come back in one page), search/listing of repos, the dataset
viewer (a host of its own, ``datasets-server.<hub host>``: :func:`point_clients_at` keeps ``datasets`` from asking it,
so ``load_dataset`` reads the ``dataset_info`` that ``push_to_hub`` writes in the README, as for a dataset the viewer
has not processed yet) and its ``refs/convert/parquet`` branch.

Seeding without the client: ``server.commit("user/repo", {"path": b"content", "old": None})`` (creates the repo if
needed); inspecting: ``server.repo("user/repo")``, ``server.file("user/repo", "path", revision)``.

Debugging: ``server.requests`` lists ``(method, path)`` of every request (``server.authorizations`` the same with the
Authorization header each sent, or None); requests for an endpoint it does not know get
a 404 JSON error and are also listed in ``server.unhandled``; a crash in a handler answers 500 and lands (with its
traceback) in ``server.errors``.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import logging
import re
import secrets
import socket
import sys
import threading
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

logger = logging.getLogger(__name__)

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}  # API path segment -> repo type
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}  # repo type -> prefix in web/resolve URLs
SHA1_RE = re.compile(r"[0-9a-f]{40}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")

# The .gitattributes the Hub puts in every new repo (its "initial commit"), shortened to the usual patterns.
DEFAULT_GITATTRIBUTES = b"""\
*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.bz2 filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.ftz filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.joblib filter=lfs diff=lfs merge=lfs -text
*.lfs.* filter=lfs diff=lfs merge=lfs -text
*.mlmodel filter=lfs diff=lfs merge=lfs -text
*.model filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.ot filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pb filter=lfs diff=lfs merge=lfs -text
*.pickle filter=lfs diff=lfs merge=lfs -text
*.pkl filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.rar filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
saved_model/**/* filter=lfs diff=lfs merge=lfs -text
*.tar.* filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.tflite filter=lfs diff=lfs merge=lfs -text
*.tgz filter=lfs diff=lfs merge=lfs -text
*.wasm filter=lfs diff=lfs merge=lfs -text
*.xz filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*.zst filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
"""


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: sha1 of ``b"blob <size>\\0" + data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _iso(date: datetime) -> str:
    return date.strftime("%Y-%m-%dT%H:%M:%S.") + f"{date.microsecond // 1000:03d}Z"


class Blob:
    """One file's content, stored in git (``lfs=False``) or as an LFS object (``lfs=True``, git holds a pointer)."""

    def __init__(self, data: bytes, lfs: bool = False):
        self.data = bytes(data)
        self.lfs = lfs
        self.size = len(self.data)
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.pointer = (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n".encode()
            if lfs
            else None
        )
        self.oid = git_blob_sha1(self.pointer if lfs else self.data)  # what git stores (the pointer for LFS files)

    @property
    def etag(self) -> str:
        """What a download's ETag/X-Linked-Etag carries: sha256 for LFS files, the git blob sha1 otherwise."""
        return self.sha256 if self.lfs else self.oid

    def __repr__(self) -> str:
        return f"Blob(size={self.size}, lfs={self.lfs}, etag={self.etag[:10]})"


@dataclass
class Commit:
    sha: str
    parent: str | None
    title: str
    message: str
    author: str
    date: datetime
    files: dict[str, Blob]


@dataclass
class Repo:
    repo_type: str  # "model", "dataset" or "space"
    repo_id: str  # "namespace/name"
    private: bool
    created_at: datetime
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    tags: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    commits: dict[str, Commit] = field(default_factory=dict)  # sha -> commit

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    @property
    def key(self) -> str:
        return URL_PREFIXES[self.repo_type] + self.repo_id

    def resolve(self, revision: str) -> Commit | None:
        """A branch, a tag or a full commit sha -> the commit (None if unknown)."""
        sha = self.branches.get(revision) or self.tags.get(revision)
        if sha is None and SHA1_RE.fullmatch(revision) and revision in self.commits:
            sha = revision
        return self.commits.get(sha) if sha else None


class HubError(Exception):
    """An error answer: status, message (JSON "error" and X-Error-Message), optional X-Error-Code and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}  # more fields of the JSON body


def _repo_not_found(user: str | None) -> HubError:
    # Like the Hub: a missing or private repo looks the same; 401 if the request carried no credentials.
    return HubError(401 if user is None else 404, "Repository not found", code="RepoNotFound")


def _revision_not_found(revision: str) -> HubError:
    return HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")


class HubServer:
    """An in-memory Hugging Face Hub on ``127.0.0.1`` (see the module docstring).

    ``tokens`` maps bearer tokens to user names. ``start()`` returns the base URL (``http://127.0.0.1:<port>``, a
    free port chosen by the OS); ``stop()`` shuts it down; ``with HubServer(...) as server`` does both.
    """

    def __init__(
        self,
        tokens: dict[str, str] | None = None,
        *,
        lfs_threshold: int = 10 * 1024 * 1024,
        initial_gitattributes: bool = True,
    ):
        self.tokens: dict[str, str] = dict(tokens or {})
        self.lfs_threshold = lfs_threshold
        self.initial_gitattributes = initial_gitattributes
        self.repos: dict[str, Repo] = {}  # "namespace/name" for models, "datasets/namespace/name" for datasets, ...
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content, uploaded through the LFS batch API
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        # (method, path, Authorization header or None) of every request, in order: what credentials a client sent
        self.authorizations: list[tuple[str, str, str | None]] = []
        self.unhandled: list[tuple[str, str]] = []  # requests no endpoint matched (answered 404)
        self.errors: list[str] = []  # tracebacks of handler crashes (answered 500)
        self.url: str | None = None
        self._upload_grants: dict[str, tuple[str, int]] = {}  # secret in an LFS upload href -> (oid, size)
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # ----------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> str:
        if self._httpd is not None:
            return self.url
        handler = type("BoundHubHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"HubServer:{port}", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:  # kept-alive client connections: end them so their threads exit
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> HubServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------- direct access (seeding and inspection)

    def create_repo(self, repo_id: str, *, repo_type: str = "model", private: bool = False) -> Repo:
        """Create a repo directly (no HTTP), with the Hub's initial commit. Raises KeyError if it exists."""
        namespace, _, name = repo_id.partition("/")
        if not namespace or not name or "/" in name:
            raise ValueError(f"repo_id must be 'namespace/name', got {repo_id!r}")
        with self._lock:
            key = URL_PREFIXES[repo_type] + repo_id
            if key in self.repos:
                raise KeyError(f"{key} already exists")
            repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=datetime.now(timezone.utc))
            files = {".gitattributes": Blob(DEFAULT_GITATTRIBUTES)} if self.initial_gitattributes else {}
            commit = self._new_commit(repo, None, files, "initial commit", "", "system")
            repo.branches["main"] = commit.sha
            self.repos[key] = repo
            return repo

    def commit(
        self,
        repo_id: str,
        files: dict[str, bytes | None],
        *,
        message: str = "Upload files",
        branch: str = "main",
        repo_type: str = "model",
        author: str | None = None,
    ) -> str:
        """Commit directly (no HTTP): ``files`` maps paths to new content, or to None to delete. LFS or not is decided
        as preupload would. Creates the repo if needed. Returns the commit sha."""
        with self._lock:
            key = URL_PREFIXES[repo_type] + repo_id
            repo = self.repos.get(key) or self.create_repo(repo_id, repo_type=repo_type)
            parent = repo.resolve(branch) if branch in repo.branches else repo.resolve("main")
            tree = dict(parent.files) if parent else {}
            for path, data in files.items():
                if data is None:
                    tree.pop(path, None)
                else:
                    tree[path] = blob = Blob(data, lfs=self._should_be_lfs(tree, path, len(data), data[:512]))
                    if blob.lfs:
                        self.lfs_objects[blob.sha256] = blob.data
            commit = self._new_commit(repo, parent.sha if parent else None, tree, message, "", author or repo.namespace)
            repo.branches[branch] = commit.sha
            return commit.sha

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[URL_PREFIXES[repo_type] + repo_id]

    def file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bytes:
        """The content of ``path`` at ``revision`` (KeyError if the repo, revision or file does not exist)."""
        commit = self.repo(repo_id, repo_type).resolve(revision)
        if commit is None:
            raise KeyError(revision)
        return commit.files[path].data

    # ---------------------------------------------------------------------------------------------- internals

    def _new_commit(
        self, repo: Repo, parent: str | None, files: dict[str, Blob], title: str, message: str, author: str
    ) -> Commit:
        date = datetime.now(timezone.utc)
        content = json.dumps(
            {
                "repo": repo.key,
                "parent": parent,
                "title": title,
                "message": message,
                "author": author,
                "date": date.isoformat(),
                "n": next(self._counter),
                "tree": sorted((path, blob.oid) for path, blob in files.items()),
            }
        ).encode()
        commit = Commit(hashlib.sha1(content).hexdigest(), parent, title, message, author, date, dict(files))
        repo.commits[commit.sha] = commit
        return commit

    def _lfs_patterns(self, tree: dict[str, Blob]) -> list[str]:
        attributes = tree.get(".gitattributes")
        if attributes is None:
            return []
        patterns = []
        for line in attributes.data.decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
                patterns.append(parts[0])
        return patterns

    def _should_be_lfs(self, tree: dict[str, Blob], path: str, size: int, sample: bytes) -> bool:
        if size >= self.lfs_threshold or b"\0" in sample:
            return True
        name = path.rsplit("/", 1)[-1]
        for pattern in self._lfs_patterns(tree):
            if "/" in pattern.strip("/"):
                if fnmatch.fnmatch(path, pattern.lstrip("/").replace("**/", "*")):
                    return True
            elif fnmatch.fnmatch(name, pattern.strip("/")):
                return True
        return False

    def _user(self, authorization: str | None) -> str | None:
        """The user a request acts as: None without credentials; 401 for credentials that are not a known token."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        user = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HubError(401, INVALID_CREDENTIALS)
        return user

    def _readable(self, repo_type: str, repo_id: str, user: str | None) -> Repo:
        repo = self.repos.get(URL_PREFIXES[repo_type] + repo_id)
        if repo is None or (repo.private and user != repo.namespace):
            raise _repo_not_found(user)
        return repo

    def _writable(self, repo_type: str, repo_id: str, user: str | None) -> Repo:
        repo = self._readable(repo_type, repo_id, user)
        if user is None:
            raise HubError(401, "You must be authenticated to write to a repository")
        if user != repo.namespace:
            raise HubError(403, f"You don't have the rights to write to {repo.key} (you are {user})")
        return repo


def _entry_not_found(path: str, commit_sha: str | None = None) -> HubError:
    headers = {"X-Repo-Commit": commit_sha} if commit_sha else None
    return HubError(404, f"Entry not found: {path}", code="EntryNotFound", headers=headers)


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer  # set on the subclass HubServer.start builds
    protocol_version = "HTTP/1.1"
    server_version = "GenzooHubDouble/1.0"
    timeout = 60  # idle kept-alive connections end after this

    # ------------------------------------------------------------------------------------------------ plumbing

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.hub._lock:
                self.hub._connections.discard(self.connection)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature of the base class
        logger.debug("%s - " + format, self.address_string(), *args)

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

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        self.segments = [unquote(s) for s in split.path.split("/")[1:]]
        self._body: bytes | None = None
        self.hub.requests.append((self.command, split.path))
        self.hub.authorizations.append((self.command, split.path, self.headers.get("Authorization")))
        try:
            self.user = self.hub._user(self.headers.get("Authorization"))
            handled = self._route()
            if not handled:
                self.hub.unhandled.append((self.command, split.path))
                message = f"HubServer: no endpoint for {self.command} {split.path}"
                logger.warning(message)
                print(message, file=sys.stderr)
                raise HubError(404, message)
        except HubError as error:
            self._read_body()  # leave the connection clean for the next request
            self._send_json({"error": error.message, **error.extra}, error.status, error.headers, error)
        except Exception:  # a bug in the server: answer 500 and keep the traceback for the test to show
            trace = traceback.format_exc()
            self.hub.errors.append(trace)
            self.close_connection = True  # the request body may be unread
            print(f"HubServer crashed on {self.command} {self.path}:\n{trace}", file=sys.stderr)
            try:
                self._send_json({"error": f"HubServer crashed: {trace.splitlines()[-1]}"}, 500)
            except OSError:
                pass

    def _read_body(self) -> bytes:
        if self._body is not None:
            return self._body
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
            self._body = b"".join(chunks)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            self._body = self.rfile.read(length) if length else b""
        return self._body

    def _json_body(self) -> dict:
        body = self._read_body()
        try:
            return json.loads(body or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(400, f"Invalid JSON body: {error}") from None

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json; charset=utf-8",
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _send_json(
        self, data, status: int = 200, headers: dict[str, str] | None = None, error: HubError | None = None
    ) -> None:
        headers = dict(headers or {})
        if error is not None:
            headers["X-Error-Message"] = error.message.encode("ascii", "replace").decode()
            if error.code:
                headers["X-Error-Code"] = error.code
        self._send(status, json.dumps(data).encode(), headers=headers)

    # ------------------------------------------------------------------------------------------------- routing

    def _route(self) -> bool:
        seg, method = self.segments, self.command
        if seg[:1] == ["api"]:
            return self._route_api(seg[1:], method)
        if seg[:1] == ["__lfs__"]:
            if method == "PUT" and len(seg) == 3 and seg[1] == "upload":
                self._lfs_put(seg[2])
                return True
            if method in ("GET", "HEAD") and len(seg) == 3 and seg[1] == "objects":
                self._lfs_get(seg[2])
                return True
            return False
        # /[datasets/|spaces/]namespace/name.git/info/lfs/objects/batch
        repo_type, rest = ("model", seg)
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type, rest = REPO_TYPES[seg[0]], seg[1:]
        if len(rest) == 6 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
            if method != "POST":
                return False
            self._lfs_batch(repo_type, f"{rest[0]}/{rest[1][: -len('.git')]}")
            return True
        # /[datasets/|spaces/]namespace/name/resolve/revision/path...
        if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            self._resolve(repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
            return True
        return False

    def _route_api(self, seg: list[str], method: str) -> bool:
        if seg == ["whoami-v2"] and method == "GET":
            self._whoami()
        elif seg == ["repos", "create"] and method == "POST":
            self._create_repo()
        elif seg == ["repos", "delete"] and method == "DELETE":
            self._delete_repo()
        elif seg == ["validate-yaml"] and method == "POST":
            self._validate_yaml()
        elif len(seg) >= 3 and seg[0] in REPO_TYPES:
            repo_type, repo_id, rest = REPO_TYPES[seg[0]], f"{seg[1]}/{seg[2]}", seg[3:]
            action, args = (rest[0], rest[1:]) if rest else (None, [])
            # (method, action after the repo id) -> (path segments after the action: a number, or "1+"; handler)
            routes = {
                ("GET", None): (0, lambda: self._repo_info(repo_type, repo_id, "main")),
                ("GET", "revision"): (1, lambda: self._repo_info(repo_type, repo_id, args[0])),
                ("GET", "tree"): ("1+", lambda: self._tree(repo_type, repo_id, args[0], "/".join(args[1:]))),
                ("POST", "paths-info"): (1, lambda: self._paths_info(repo_type, repo_id, args[0])),
                ("POST", "preupload"): (1, lambda: self._preupload(repo_type, repo_id, args[0])),
                ("POST", "commit"): (1, lambda: self._commit(repo_type, repo_id, args[0])),
                ("POST", "branch"): (1, lambda: self._create_branch(repo_type, repo_id, args[0])),
                ("DELETE", "branch"): (1, lambda: self._delete_ref(repo_type, repo_id, "branches", args[0])),
                ("POST", "tag"): (1, lambda: self._create_tag(repo_type, repo_id, args[0])),
                ("DELETE", "tag"): (1, lambda: self._delete_ref(repo_type, repo_id, "tags", args[0])),
                ("GET", "refs"): (0, lambda: self._refs(repo_type, repo_id)),
                ("GET", "commits"): (1, lambda: self._commits(repo_type, repo_id, args[0])),
                ("PUT", "settings"): (0, lambda: self._settings(repo_type, repo_id)),
            }
            arity, handler = routes.get((method, action), (None, None))
            if handler is None or (len(args) < 1 if arity == "1+" else len(args) != arity):
                return False
            handler()
        else:
            return False
        return True

    # -------------------------------------------------------------------------------------------- repos, users

    def _whoami(self) -> None:
        if self.user is None:
            raise HubError(401, INVALID_CREDENTIALS)
        self._send_json(
            {
                "type": "user",
                "id": hashlib.sha1(self.user.encode()).hexdigest()[:24],
                "name": self.user,
                "fullname": self.user,
                "email": f"{self.user}@example.com",
                "emailVerified": True,
                "isPro": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test token", "role": "write"}},
            }
        )

    def _validate_yaml(self) -> None:
        """README.md metadata check (create_commit calls it before committing a README.md). Without a YAML parser in
        the standard library, only the front matter's framing is checked: an opening ``---`` needs a closing one."""
        content = self._json_body().get("content", "")
        lines = content.splitlines()
        if lines and lines[0].strip() == "---" and not any(line.strip() == "---" for line in lines[1:]):
            message = "Invalid metadata: the YAML front matter is not closed by a '---' line"
            raise HubError(400, message, extra={"errors": [{"message": message}], "warnings": []})
        self._send_json({"errors": [], "warnings": []})

    def _repo_from_body(self, body: dict) -> tuple[str, str]:
        repo_type = body.get("type") or "model"
        if repo_type not in URL_PREFIXES:
            raise HubError(400, f"Unsupported repo type: {repo_type}")
        name = body.get("name")
        namespace = body.get("organization") or body.get("namespace") or self.user
        if not name or not namespace:
            raise HubError(400, "Missing repo name")
        return repo_type, f"{namespace}/{name}"

    def _create_repo(self) -> None:
        body = self._json_body()
        if self.user is None:
            raise HubError(401, "You must be authenticated to create a repository")
        repo_type, repo_id = self._repo_from_body(body)
        namespace = repo_id.split("/")[0]
        if namespace != self.user:
            message = f'You don\'t have the rights to create a {repo_type} under the namespace "{namespace}"'
            raise HubError(403, message)
        private = body.get("private")
        if body.get("visibility") is not None:
            private = body["visibility"] == "private"
        with self.hub._lock:
            key = URL_PREFIXES[repo_type] + repo_id
            if key in self.hub.repos:
                # The Hub's 409 carries the repo's URL: create_repo(exist_ok=True) reads it.
                url = f"{self.hub.url}/{key}"
                raise HubError(409, f"You already created this {repo_type} repo", extra={"url": url})
            repo = self.hub.create_repo(repo_id, repo_type=repo_type, private=bool(private))
        self._send_json({"url": f"{self.hub.url}/{repo.key}", "name": repo_id, "id": repo_id})

    def _delete_repo(self) -> None:
        body = self._json_body()
        repo_type, repo_id = self._repo_from_body(body)
        with self.hub._lock:
            repo = self.hub._writable(repo_type, repo_id, self.user)
            del self.hub.repos[repo.key]
        self._send(200, b"")

    def _settings(self, repo_type: str, repo_id: str) -> None:
        body = self._json_body()
        with self.hub._lock:
            repo = self.hub._writable(repo_type, repo_id, self.user)
            if body.get("private") is not None:
                repo.private = bool(body["private"])
            if body.get("visibility") is not None:
                repo.private = body["visibility"] == "private"
        self._send_json({})

    def _readable_commit(self, repo_type: str, repo_id: str, revision: str) -> tuple[Repo, Commit]:
        repo = self.hub._readable(repo_type, repo_id, self.user)
        commit = repo.resolve(revision)
        if commit is None:
            raise _revision_not_found(revision)
        return repo, commit

    def _repo_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        with self.hub._lock:
            repo, commit = self._readable_commit(repo_type, repo_id, revision)
            blobs = _flag(self.query.get("blobs", [None])[0])
            siblings = []
            for path in sorted(commit.files):
                sibling: dict = {"rfilename": path}
                if blobs:
                    blob = commit.files[path]
                    sibling.update(size=blob.size, blobId=blob.oid)
                    if blob.lfs:
                        sibling["lfs"] = {"size": blob.size, "sha256": blob.sha256, "pointerSize": len(blob.pointer)}
                siblings.append(sibling)
            info = {
                "_id": hashlib.sha1(repo.key.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "author": repo.namespace,
                "sha": commit.sha,
                "lastModified": _iso(commit.date),
                "createdAt": _iso(repo.created_at),
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
            }
            if blobs:
                info["usedStorage"] = sum(blob.size for blob in commit.files.values())
        self._send_json(info)

    # ---------------------------------------------------------------------------------------- refs, commits

    def _create_branch(self, repo_type: str, repo_id: str, branch: str) -> None:
        body = self._json_body()
        with self.hub._lock:
            repo = self.hub._writable(repo_type, repo_id, self.user)
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            start = body.get("startingPoint") or "main"
            commit = repo.resolve(start)
            if commit is None:
                raise _revision_not_found(start)
            repo.branches[branch] = commit.sha
        self._send_json({})

    def _create_tag(self, repo_type: str, repo_id: str, revision: str) -> None:
        body = self._json_body()
        tag = body.get("tag")
        if not tag:
            raise HubError(400, "Missing tag name")
        with self.hub._lock:
            repo = self.hub._writable(repo_type, repo_id, self.user)
            commit = repo.resolve(revision)
            if commit is None:
                raise _revision_not_found(revision)
            if tag in repo.tags:
                raise HubError(409, f"Reference already exists: refs/tags/{tag}")
            repo.tags[tag] = commit.sha
        self._send_json({})

    def _delete_ref(self, repo_type: str, repo_id: str, kind: str, name: str) -> None:
        with self.hub._lock:
            repo = self.hub._writable(repo_type, repo_id, self.user)
            refs = getattr(repo, kind)
            if name not in refs:
                raise _revision_not_found(name)
            if kind == "branches" and name == "main":
                raise HubError(403, "Cannot delete the default branch")
            del refs[name]
        self._send_json({})

    def _refs(self, repo_type: str, repo_id: str) -> None:
        with self.hub._lock:
            repo = self.hub._readable(repo_type, repo_id, self.user)

            def refs(kind: str, prefix: str) -> list[dict]:
                items = getattr(repo, kind).items()
                return [{"name": n, "ref": f"refs/{prefix}/{n}", "targetCommit": sha} for n, sha in sorted(items)]

            data = {"branches": refs("branches", "heads"), "tags": refs("tags", "tags"), "converts": []}
            if _flag(self.query.get("include_prs", [None])[0]):
                data["pullRequests"] = []
        self._send_json(data)

    def _commits(self, repo_type: str, repo_id: str, revision: str) -> None:
        with self.hub._lock:
            repo, commit = self._readable_commit(repo_type, repo_id, revision)
            history = []
            while commit is not None:
                history.append(
                    {
                        "id": commit.sha,
                        "title": commit.title,
                        "message": commit.message,
                        "date": _iso(commit.date),
                        "authors": [{"user": commit.author}],
                    }
                )
                commit = repo.commits.get(commit.parent) if commit.parent else None
        self._send_json(history)

    # ---------------------------------------------------------------------------------------- tree, paths-info

    def _last_commit(self, repo: Repo, commit: Commit, path: str, is_folder: bool) -> dict:
        """The latest commit (from ``commit`` back) that changed ``path`` (a file, or anything under a folder)."""

        def state(c: Commit | None):
            if c is None:
                return None
            if is_folder:
                return sorted((p, b.oid) for p, b in c.files.items() if p.startswith(path + "/"))
            blob = c.files.get(path)
            return blob.oid if blob else None

        current = commit
        while True:
            parent = repo.commits.get(current.parent) if current.parent else None
            if parent is None or state(parent) != state(current):
                return {"id": current.sha, "title": current.title, "date": _iso(current.date)}
            current = parent

    def _entry(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict | None:
        blob = commit.files.get(path)
        if blob is not None:
            entry = {"type": "file", "oid": blob.oid, "size": blob.size, "path": path}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": len(blob.pointer)}
        else:
            children = sorted((p, b.oid) for p, b in commit.files.items() if p.startswith(path + "/"))
            if not children:
                return None
            tree_oid = hashlib.sha1(json.dumps(children).encode()).hexdigest()
            entry = {"type": "directory", "oid": tree_oid, "size": 0, "path": path}
        if expand:
            entry["lastCommit"] = self._last_commit(repo, commit, path, entry["type"] == "directory")
            if blob is not None:
                entry["securityFileStatus"] = {"status": "safe", "avScan": None, "pickleImportScan": None}
        return entry

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        recursive = _flag(self.query.get("recursive", [None])[0])
        expand = _flag(self.query.get("expand", [None])[0])
        path = path.strip("/")
        with self.hub._lock:
            repo, commit = self._readable_commit(repo_type, repo_id, revision)
            prefix = path + "/" if path else ""
            if path and path in commit.files:
                raise HubError(400, f"{path} is a file, not a folder")
            under = [p for p in commit.files if p.startswith(prefix)]
            if path and not under:
                raise _entry_not_found(path, commit.sha)
            paths: set[str] = set()
            for p in under:
                parts = p[len(prefix) :].split("/")
                depth = len(parts) if recursive else 1
                for i in range(1, depth + 1):
                    paths.add(prefix + "/".join(parts[:i]))
            entries = [self._entry(repo, commit, p, expand) for p in sorted(paths)]
        entries.sort(key=lambda e: (e["type"] != "directory", e["path"]))
        self._send_json(entries)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        body = self._read_body()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            data = json.loads(body or b"{}")
            paths, expand = data.get("paths", []), bool(data.get("expand"))
        else:
            form = parse_qs(body.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), _flag((form.get("expand") or [None])[0])
        with self.hub._lock:
            repo, commit = self._readable_commit(repo_type, repo_id, revision)
            entries = [self._entry(repo, commit, p.strip("/"), expand) for p in paths]
        self._send_json([e for e in entries if e is not None])

    # ---------------------------------------------------------------------------------------------- uploads

    def _branch_head(self, repo: Repo, revision: str) -> Commit:
        if revision not in repo.branches:
            if repo.resolve(revision) is not None:
                raise HubError(400, f"Invalid revision {revision}: commits go to a branch, not to a tag or a sha")
            raise _revision_not_found(revision)
        return repo.commits[repo.branches[revision]]

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        body = self._json_body()
        if _flag(self.query.get("create_pr", [None])[0]):
            raise HubError(400, "HubServer does not support pull requests (create_pr)")
        with self.hub._lock:
            repo = self.hub._writable(repo_type, repo_id, self.user)
            head = self._branch_head(repo, revision)
            files = []
            for item in body.get("files", []):
                path, size = item["path"], int(item.get("size", 0))
                sample = base64.b64decode(item.get("sample", ""))
                lfs = self.hub._should_be_lfs(head.files, path, size, sample)
                existing = head.files.get(path)
                oid = None if existing is None else (existing.sha256 if existing.lfs else existing.oid)
                mode = "lfs" if lfs else "regular"
                files.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._send_json({"files": files, "commitOid": head.sha})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        lines = [json.loads(line) for line in self._read_body().splitlines() if line.strip()]
        if _flag(self.query.get("create_pr", [None])[0]):
            raise HubError(400, "HubServer does not support pull requests (create_pr)")
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of a commit must be its header")
        header = lines[0]["value"]
        with self.hub._lock:
            repo = self.hub._writable(repo_type, repo_id, self.user)
            head = self._branch_head(repo, revision)
            parent_commit = header.get("parentCommit")
            if parent_commit and parent_commit != head.sha:
                raise HubError(412, f"A commit has happened since {parent_commit}: {revision} is now at {head.sha}")
            tree = dict(head.files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = value.get("path", "").strip("/")
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"Unsupported encoding {value.get('encoding')} for {path}")
                    tree[path] = Blob(base64.b64decode(value.get("content", "")))
                elif key == "lfsFile":
                    oid = value.get("oid", "")
                    data = self.hub.lfs_objects.get(oid)
                    if data is None:
                        raise HubError(422, f"LFS object {oid} for {path} was never uploaded")
                    if value.get("size") is not None and int(value["size"]) != len(data):
                        raise HubError(422, f"LFS object {oid} for {path} has size {len(data)}, not {value['size']}")
                    tree[path] = Blob(data, lfs=True)
                elif key == "deletedFile":
                    if path not in tree:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                    del tree[path]
                elif key == "deletedFolder":
                    doomed = [p for p in tree if p.startswith(path + "/")]
                    if not doomed:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                    for p in doomed:
                        del tree[p]
                else:
                    raise HubError(400, f"Unknown commit operation {key!r}")
            commit = self.hub._new_commit(
                repo, head.sha, tree, header.get("summary") or "", header.get("description") or "", self.user
            )
            repo.branches[revision] = commit.sha
        self._send_json(
            {
                "success": True,
                "commitOid": commit.sha,
                "commitUrl": f"{self.hub.url}/{repo.key}/commit/{commit.sha}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )

    # --------------------------------------------------------------------------------------------------- LFS

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        body = self._json_body()
        operation = body.get("operation")
        objects = []
        with self.hub._lock:
            if operation == "upload":
                self.hub._writable(repo_type, repo_id, self.user)
            elif operation == "download":
                self.hub._readable(repo_type, repo_id, self.user)
            else:
                raise HubError(400, f"Unknown LFS operation {operation!r}")
            for obj in body.get("objects", []):
                oid, size = str(obj.get("oid", "")), int(obj.get("size", 0))
                item: dict = {"oid": oid, "size": size}
                stored = self.hub.lfs_objects.get(oid)
                if not SHA256_RE.fullmatch(oid):
                    item["error"] = {"code": 422, "message": f"Invalid oid {oid!r}: expected a sha256"}
                elif operation == "upload":
                    if stored is None or len(stored) != size:  # nothing (or not that) yet: hand out an upload URL
                        grant = secrets.token_urlsafe(16)
                        self.hub._upload_grants[grant] = (oid, size)
                        href = f"{self.hub.url}/__lfs__/upload/{grant}"
                        item.update(authenticated=True, actions={"upload": {"href": href, "expires_in": 3600}})
                elif stored is None:
                    item["error"] = {"code": 404, "message": "Object does not exist"}
                else:
                    href = f"{self.hub.url}/__lfs__/objects/{oid}"
                    item.update(authenticated=True, actions={"download": {"href": href, "expires_in": 3600}})
                objects.append(item)
        data = json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()
        self._send(200, data, content_type="application/vnd.git-lfs+json")

    def _lfs_put(self, grant: str) -> None:
        data = self._read_body()
        with self.hub._lock:
            expected = self.hub._upload_grants.get(grant)
            if expected is None:
                raise HubError(403, "Invalid or expired LFS upload URL")
            oid, size = expected
            if len(data) != size or hashlib.sha256(data).hexdigest() != oid:
                raise HubError(400, f"Uploaded content does not match oid {oid} and size {size}")
            self.hub.lfs_objects[oid] = data
            del self.hub._upload_grants[grant]
        self._send(200, b"", headers={"ETag": f'"{oid}"'})

    def _lfs_get(self, oid: str) -> None:
        with self.hub._lock:
            data = self.hub.lfs_objects.get(oid)
        if data is None:
            raise HubError(404, "Object does not exist")
        self._send_content(data, {"ETag": f'"{oid}"'})

    # ---------------------------------------------------------------------------------------------- download

    def _send_content(self, data: bytes, headers: dict[str, str]) -> None:
        """200 with the whole content, or 206 for a ``Range: bytes=start-[end]`` request (resumed downloads)."""
        headers = {"Accept-Ranges": "bytes", **headers}
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if match and (match.group(1) or match.group(2)):
            start_s, end_s = match.groups()
            if start_s:
                start, end = int(start_s), min(int(end_s) if end_s else len(data) - 1, len(data) - 1)
            else:  # suffix range: the last N bytes
                start, end = max(len(data) - int(end_s), 0), len(data) - 1
            if start >= len(data) or start > end:
                content_range = {"Content-Range": f"bytes */{len(data)}"}
                raise HubError(416, "Requested range not satisfiable", headers=content_range)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(206, data[start : end + 1], "application/octet-stream", headers)
        else:
            self._send(200, data, "application/octet-stream", headers)

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        with self.hub._lock:
            repo, commit = self._readable_commit(repo_type, repo_id, revision)
            blob = commit.files.get(path)
        if blob is None:
            raise _entry_not_found(path, commit.sha)
        name = path.rsplit("/", 1)[-1]
        headers = {
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{blob.etag}"',
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\"",
        }
        if blob.lfs:  # what the Hub puts on the redirect to its CDN
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(blob.size)})
        self._send_content(blob.data, headers)


# ------------------------------------------------------------------------------------------- pointing clients at it


@dataclass
class HubFixture:
    """What the ``hub`` fixture yields."""

    url: str  # base URL of the server, e.g. "http://127.0.0.1:41234"
    token: str  # a token of the user "user", who owns the namespace "user"
    cache_dir: str  # this test's own Hugging Face Hub cache (deleting it = clearing the cache)
    server: HubServer


def point_clients_at(monkeypatch, url: str, cache_dir: str) -> None:
    """Point ``huggingface_hub``, Diffusers and ``datasets`` at ``url`` for one test, with ``cache_dir`` as the Hub
    cache (and ``datasets``' default cache next to it, in ``datasets-cache``), online, without Xet and without any
    ambient token. Everything goes through ``monkeypatch``, so it is undone afterwards.

    These libraries read their settings from the environment once, at import: ``huggingface_hub.constants`` holds
    them (read again at call time by most code), and a few modules copied one into their own namespace, so those
    copies are patched too; ``datasets.config`` has copies of its own (see :func:`_point_datasets_at`). Setting the
    environment variables as well covers code that reads them later (and subprocesses).
    """
    import importlib

    import huggingface_hub.hf_api
    import huggingface_hub.utils._cache_manager
    from huggingface_hub import constants

    settings = {
        "HF_ENDPOINT": url,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",  # hf_xet is installed; this server speaks plain HTTP + LFS only
        "HF_HUB_CACHE": cache_dir,
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)

    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # is_offline_mode() reads it at every request
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # is_xet_available() reads it at call time
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache_dir)
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 5)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 5)
    # No token but the ones a test passes: no token file (HF_HOME is shared by the whole session).
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(Path(cache_dir).parent / "no-hf-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(Path(cache_dir).parent / "no-hf-stored-tokens"))
    # huggingface_hub.hf_api.api is the HfApi behind the module-level functions (model_info, create_repo,
    # upload_folder, ...): it copied constants.ENDPOINT when huggingface_hub was imported.
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", url)
    monkeypatch.setattr(huggingface_hub.utils._cache_manager, "HF_HUB_CACHE", cache_dir)  # scan_cache_dir's default

    # Diffusers copied HF_HUB_OFFLINE (and HF_ENDPOINT, for messages) at import. Import the modules now, so that none
    # of them copies the patched value later and keeps it after this test.
    copies = {
        "diffusers.utils.hub_utils": ("HF_HUB_OFFLINE", "HUGGINGFACE_CO_RESOLVE_ENDPOINT"),
        "diffusers.loaders.lora_base": ("HF_HUB_OFFLINE",),
        "diffusers.models.attention_dispatch": ("HF_HUB_OFFLINE",),
        "diffusers.utils.constants": ("HUGGINGFACE_CO_RESOLVE_ENDPOINT",),
        "diffusers.utils": ("HUGGINGFACE_CO_RESOLVE_ENDPOINT",),
        "diffusers.configuration_utils": ("HUGGINGFACE_CO_RESOLVE_ENDPOINT",),
    }
    for module_name, names in copies.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in names:
            if hasattr(module, name):
                monkeypatch.setattr(module, name, False if name == "HF_HUB_OFFLINE" else url)

    _point_datasets_at(monkeypatch, url, cache_dir)


def _point_datasets_at(monkeypatch, url: str, cache_dir: str) -> None:
    """The ``datasets`` side of :func:`point_clients_at` (nothing to do if it is not installed).

    ``datasets.config`` copied the endpoint, offline mode and cache paths from the environment at import, and every
    client it builds (``HfApi(endpoint=config.HF_ENDPOINT)``, ``HfFileSystem(endpoint=config.HF_ENDPOINT)``, the
    ``hf://`` storage options of ``DownloadConfig``, the resolve URLs of data files) reads them from there at call time.
    Its default cache goes next to this test's Hub cache, so nothing prepared in one test is found by another.
    ``HfFileSystem`` instances are cached by fsspec (per endpoint, token and thread; a port may be reused by a later
    test) and cache repo listings and existence checks: the test gets an instance cache of its own.
    """
    try:
        import datasets.config
        import huggingface_hub.hf_file_system
        from huggingface_hub import HfFileSystem
    except ImportError:
        return

    datasets_cache = Path(cache_dir).parent / "datasets-cache"
    for name, value in {
        "HF_DATASETS_OFFLINE": "0",
        "HF_DATASETS_CACHE": str(datasets_cache),
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    config = datasets.config
    monkeypatch.setattr(config, "HF_ENDPOINT", url)
    monkeypatch.setattr(config, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}")
    monkeypatch.setattr(config, "HF_HUB_OFFLINE", False)  # file_utils.raise_if_offline and load.py read it
    monkeypatch.setattr(config, "HF_DATASETS_OFFLINE", False)
    # increase_load_count() HEADs a file on S3 (a real host) for each load_dataset: off.
    monkeypatch.setattr(config, "HF_UPDATE_DOWNLOAD_COUNTS", False)
    # The dataset viewer is another host, "datasets-server." + the endpoint's host, which no DNS resolves for
    # 127.0.0.1 and this server cannot be. load_dataset asks it for the infos of the parquet export of a dataset (at
    # its main revision, without data_dir/data_files) and falls back to the README's dataset_info when it has none,
    # as for a dataset the real viewer has not processed yet (e.g. just pushed): take that path without asking.
    monkeypatch.setattr(config, "USE_PARQUET_EXPORT", False)
    downloads = datasets_cache / config.DOWNLOADED_DATASETS_DIR
    extracted = downloads / config.EXTRACTED_DATASETS_DIR
    monkeypatch.setattr(config, "HF_DATASETS_CACHE", datasets_cache)
    monkeypatch.setattr(config, "DEFAULT_DOWNLOADED_DATASETS_PATH", str(downloads))
    monkeypatch.setattr(config, "DOWNLOADED_DATASETS_PATH", downloads)
    monkeypatch.setattr(config, "DEFAULT_EXTRACTED_DATASETS_PATH", str(extracted))
    monkeypatch.setattr(config, "EXTRACTED_DATASETS_PATH", extracted)

    # A fresh instance cache for this test (instances made before it, for another endpoint, are set aside with the
    # original dict, and come back with it): nothing listed or checked before leaks in, nothing made now leaks out.
    monkeypatch.setattr(HfFileSystem, "_cache", {})
    monkeypatch.setattr(HfFileSystem, "_latest", None, raising=False)  # HfFileSystem.current(): a key of _cache
    # huggingface_hub.hffs: the module-level instance (made at import, for the real Hub).
    monkeypatch.setattr(huggingface_hub.hf_file_system, "hffs", HfFileSystem(endpoint=url))
    monkeypatch.setattr(huggingface_hub, "hffs", huggingface_hub.hf_file_system.hffs, raising=False)
