"""A local stand-in for the Hugging Face Hub: just what ``snapshot_download`` calls.

huggingface_hub (2.x) downloads a snapshot with these requests, all answered here:

- ``GET /api/models/{repo}/revision/{rev}`` (or ``/api/models/{repo}`` for ``main``): the
  repository's ``sha`` and ``siblings``.
- ``GET /api/models/{repo}/tree/{commit}?recursive=True``: every file with its size.
- ``HEAD /{repo}/resolve/{rev}/{file}``: ``ETag``, ``X-Repo-Commit``, ``Content-Length``.
- ``GET /{repo}/resolve/{commit}/{file}``: the bytes, or a ``Range`` of them (206), which is
  how an interrupted download resumes.

Errors carry the Hub's ``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``, ``GatedRepo``), which huggingface_hub turns into its typed errors. A gated
repository answers 401 unless the request carries ``Authorization: Bearer <its token>``.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class HubRepo:
    """One model repository: its files at one commit, and the refs that name that commit.

    Attributes:
        repo_id: ``org/name``.
        files: file name in the repository -> content.
        commit: the 40-hex commit sha every ref resolves to.
        refs: branch and tag names that resolve to ``commit`` (``main`` at least).
        token: when set, the repository is gated: requests need this bearer token.
        drop_once: files whose first download is cut off (the connection is closed after
            three quarters of the bytes, though the full ``Content-Length`` was announced).
    """

    repo_id: str
    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    refs: tuple[str, ...] = ("main",)
    token: str | None = None
    drop_once: set[str] = field(default_factory=set)

    @classmethod
    def from_directory(cls, repo_id: str, directory: Path, **options: object) -> HubRepo:
        """A repository holding every file of ``directory`` (not recursive)."""
        files = {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}
        return cls(repo_id, files, **options)  # type: ignore[arg-type]

    def resolves(self, revision: str) -> bool:
        """Whether ``revision`` (a ref or the commit) names this repository's commit."""
        return revision == self.commit or revision in self.refs


@dataclass(frozen=True)
class Request:
    """One request the server answered (the Authorization header is reduced to present/absent)."""

    method: str
    path: str
    range: str | None
    authorised: bool


class HubServer:
    """A threaded HTTP server on 127.0.0.1 serving :class:`HubRepo` repositories.

    Attributes:
        endpoint: ``http://127.0.0.1:PORT``, the value for ``HF_ENDPOINT``.
        requests: every request answered, in order.
    """

    def __init__(self, repos: list[HubRepo]) -> None:
        self.repos = {repo.repo_id: repo for repo in repos}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, request: Request) -> None:
        """Remember one request (called from the handler threads)."""
        with self._lock:
            self.requests.append(request)

    def take_drop(self, repo: HubRepo, filename: str) -> bool:
        """Whether this download of ``filename`` is the one to cut off (true once per file)."""
        with self._lock:
            if filename in repo.drop_once:
                repo.drop_once.discard(filename)
                return True
            return False


def _handler_for(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_HubHandler):
        server_hub = hub

    return Handler


class _HubHandler(BaseHTTPRequestHandler):
    server_hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """Stay quiet: the test reads :attr:`HubServer.requests` instead."""

    def do_HEAD(self) -> None:  # noqa: N802 - the base class's naming
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        authorised = self.headers.get("Authorization") is not None
        self.server_hub.record(Request(self.command, path, self.headers.get("Range"), authorised))
        if path.startswith("/api/models/"):
            self._api(path.removeprefix("/api/models/"))
        elif "/resolve/" in path:
            self._resolve(path.lstrip("/"), body)
        else:
            self._error(404, "RepoNotFound", "no such route")

    def _api(self, rest: str) -> None:
        for marker in ("/revision/", "/tree/"):
            repo_id, found, revision = rest.partition(marker)
            if found:
                repo = self._repo(repo_id, revision)
                if repo is None:
                    return
                self._json(_info(repo) if marker == "/revision/" else _tree(repo))
                return
        repo = self._repo(rest, "main")  # /api/models/{repo}: the default branch
        if repo is not None:
            self._json(_info(repo))

    def _resolve(self, rest: str, body: bool) -> None:
        repo_id, _, tail = rest.partition("/resolve/")
        revision, _, filename = tail.partition("/")
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        if filename not in repo.files:
            self._error(404, "EntryNotFound", f"{filename} is not in {repo_id}", repo.commit)
            return
        content = repo.files[filename]
        start = _range_start(self.headers.get("Range"))
        self.send_response(206 if start else 200)
        self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
        self.send_header("X-Repo-Commit", repo.commit)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(content) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
        self.end_headers()
        if body:
            self._send_body(content[start:], cut=self.server_hub.take_drop(repo, filename))

    def _send_body(self, data: bytes, cut: bool) -> None:
        if not cut:
            self.wfile.write(data)
            return
        self.wfile.write(data[: len(data) * 3 // 4])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _repo(self, repo_id: str, revision: str) -> HubRepo | None:
        """The repository, or None after answering the error the Hub would give."""
        repo = self.server_hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return None
        if repo.token is not None and self.headers.get("Authorization") != f"Bearer {repo.token}":
            self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted")
            return None
        if not repo.resolves(revision):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo

    def _json(self, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _info(repo: HubRepo) -> dict[str, object]:
    return {"id": repo.repo_id, "sha": repo.commit, "private": False,
            "gated": "manual" if repo.token else False,
            "siblings": [{"rfilename": name} for name in repo.files]}


def _tree(repo: HubRepo) -> list[dict[str, object]]:
    return [{"type": "file", "path": name, "size": len(content),
             "oid": hashlib.sha1(content).hexdigest()}  # noqa: S324 - git's blob id, not security
            for name, content in repo.files.items()]


def _range_start(header: str | None) -> int:
    """The first byte of ``Range: bytes=N-`` (the only form huggingface_hub sends), else 0."""
    if not header or not header.startswith("bytes="):
        return 0
    first, _, _ = header.removeprefix("bytes=").partition("-")
    return int(first) if first.isdigit() else 0


def serve(repos: list[HubRepo]) -> Iterator[HubServer]:
    """Run a :class:`HubServer` for the duration of a fixture."""
    with HubServer(repos) as server:
        yield server
