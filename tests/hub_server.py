"""A small Hub-compatible HTTP server on 127.0.0.1, for testing the real huggingface_hub code.

It keeps repos in memory as commits (sha -> {path: bytes}) and branch refs, and answers the
requests ``hf_hub_download`` / ``snapshot_download`` send: ``HEAD``/``GET
/{repo}/resolve/{rev}/{path}``, ``GET /api/models/{repo}[/revision/{rev}]`` and ``GET
/api/models/{repo}/tree/{rev}``. Point the client at it with ``HF_ENDPOINT`` and
``HF_HUB_DISABLE_XET=1``.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        if revision in self.commits:
            return revision
        return None


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class LoopbackHub:
    """An in-memory Hub: ``commit`` files, ``start`` serving, read ``url``."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None

    # ---- content ---------------------------------------------------------------------------
    def create_repo(self, repo_id: str) -> Repo:
        with self.lock:
            return self.repos.setdefault(repo_id, Repo())

    def commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main", message: str = "",
               deletions: tuple[str, ...] = ()) -> str:
        """Add a commit on ``branch`` on top of its current tree; returns the 40-hex sha."""
        repo = self.create_repo(repo_id)
        with self.lock:
            parent = repo.refs.get(branch)
            tree = dict(repo.commits.get(parent, {})) if parent else {}
            for path in deletions:
                tree.pop(path, None)
            tree.update(files)
            digest = hashlib.sha1()
            digest.update((parent or "").encode() + message.encode() + str(len(repo.commits)).encode())
            for path in sorted(tree):
                digest.update(path.encode() + git_blob_sha(tree[path]).encode())
            sha = digest.hexdigest()
            repo.commits[sha] = tree
            repo.refs[branch] = sha
            return sha

    def commit_folder(self, repo_id: str, folder: str | Path, branch: str = "main") -> str:
        folder = Path(folder)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.commit(repo_id, files, branch=branch)

    # ---- serving ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackHub:
        hub = self

        class Handler(_HubHandler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _HubHandler(BaseHTTPRequestHandler):
    hub: LoopbackHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    # ---- helpers ---------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode())

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode(), {"X-Error-Code": code, "X-Error-Message": message})

    def _repo_and_rest(self, parts: list[str]) -> tuple[str, list[str]]:
        return "/".join(parts[:2]), parts[2:]

    def _lookup(self, repo_id: str, revision: str):
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return None, None
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None, None
        return repo, sha

    # ---- routes ----------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlparse(self.path)
        self.hub.requests.append((self.command, url.path))
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(parts)
        elif len(parts) >= 4 and parts[:2] == ["api", "models"]:
            repo_id, rest = self._repo_and_rest(parts[2:])
            if not rest:
                self._info(repo_id, "main")
            elif rest[0] == "revision" and len(rest) >= 2:
                self._info(repo_id, "/".join(rest[1:]))
            elif rest[0] == "tree" and len(rest) >= 2:
                self._tree(repo_id, rest[1], "/".join(rest[2:]))
            else:
                self._error(404, "EntryNotFound", "unknown api route")
        else:
            self._error(404, "RepoNotFound", "unknown route")

    def do_POST(self) -> None:
        url = urlparse(self.path)
        self.hub.requests.append((self.command, url.path))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts == ["api", "repos", "create"]:
            self._create_repo(json.loads(body or b"{}"))
        elif parts == ["api", "validate-yaml"]:
            self._validate_yaml(json.loads(body or b"{}"))
        elif len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] in ("preupload", "commit"):
            repo_id, rest = self._repo_and_rest(parts[2:])
            revision = "/".join(rest[1:])
            if repo_id not in self.hub.repos:
                self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            elif rest[0] == "preupload":
                self._preupload(repo_id, revision, json.loads(body or b"{}"))
            else:
                self._commit(repo_id, revision, body)
        else:
            self._error(404, "RepoNotFound", "unknown route")

    def _create_repo(self, payload: dict) -> None:
        name, org = payload.get("name"), payload.get("organization")
        repo_id = f"{org}/{name}" if org else str(name)
        if repo_id in self.hub.repos:
            self._error(409, "RepoExists", "You already created this model repo")
            return
        self.hub.create_repo(repo_id)
        self._json({"url": f"{self.hub.url}/{repo_id}", "name": repo_id})

    def _validate_yaml(self, payload: dict) -> None:
        import yaml

        content = str(payload.get("content", ""))
        errors = []
        if content.startswith("---"):
            block = content.split("---", 2)
            try:
                meta = yaml.safe_load(block[1]) if len(block) > 2 else None
                if meta is not None and not isinstance(meta, dict):
                    errors.append({"message": "metadata must be a mapping"})
            except yaml.YAMLError as exc:
                errors.append({"message": f"invalid YAML: {exc}"})
        self._json({"errors": errors, "warnings": []}, status=400 if errors else 200)

    def _preupload(self, repo_id: str, revision: str, payload: dict) -> None:
        repo = self.hub.repos[repo_id]
        sha = repo.resolve(revision)
        tree = repo.commits.get(sha, {}) if sha else {}
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                  "oid": git_blob_sha(tree[f["path"]]) if f["path"] in tree else None}
                 for f in payload.get("files", [])]
        self._json({"files": files, "commitOid": sha})

    def _commit(self, repo_id: str, revision: str, body: bytes) -> None:
        files: dict[str, bytes] = {}
        deletions: list[str] = []
        message = ""
        repo = self.hub.repos[repo_id]
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value", {})
            if key == "header":
                message = value.get("summary", "")
                parent = value.get("parentCommit")
                if parent and repo.refs.get(revision) not in (None, parent):
                    self._error(412, "PreconditionFailed", "parent commit is not the head of the branch")
                    return
            elif key == "file":
                data = value.get("content", "")
                files[value["path"]] = base64.b64decode(data) if value.get("encoding") == "base64" else data.encode()
            elif key == "deletedFile":
                deletions.append(value["path"])
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                head = repo.refs.get(revision)
                deletions.extend(p for p in repo.commits.get(head, {}) if p.startswith(prefix))
            elif key == "lfsFile":
                self._error(400, "BadRequest", "the loopback Hub takes regular (inline) uploads only")
                return
        if revision not in repo.refs and revision != "main" and repo.resolve(revision) is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        sha = self.hub.commit(repo_id, files, branch=revision, message=message, deletions=tuple(deletions))
        self._json({"commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}", "commitOid": sha,
                    "pullRequestUrl": None})

    def _resolve(self, parts: list[str]) -> None:
        repo_id, rest = self._repo_and_rest(parts)
        revision, path = rest[1], "/".join(rest[2:])
        repo, sha = self._lookup(repo_id, revision)
        if repo is None:
            return
        data = repo.commits[sha].get(path)
        if data is None:
            self._send(404, b"{}", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha})
            return
        headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_sha(data)}"'}
        self._send(200, data, headers, content_type="application/octet-stream")

    def _info(self, repo_id: str, revision: str) -> None:
        repo, sha = self._lookup(repo_id, revision)
        if repo is None:
            return
        siblings = [{"rfilename": p} for p in sorted(repo.commits[sha])]
        self._json({"id": repo_id, "modelId": repo_id, "sha": sha, "siblings": siblings, "private": False,
                    "tags": [], "downloads": 0, "likes": 0})

    def _tree(self, repo_id: str, revision: str, prefix: str) -> None:
        fresh = self.hub.repos.get(repo_id)
        if fresh is not None and not fresh.refs and revision == "main":
            self._json([])  # a repo created but never committed to: an empty main (``upload_folder``'s deletions)
            return
        repo, sha = self._lookup(repo_id, revision)
        if repo is None:
            return
        tree = repo.commits[sha]
        entries = [{"type": "file", "path": p, "size": len(b), "oid": git_blob_sha(b)}
                   for p, b in sorted(tree.items()) if not prefix or p.startswith(prefix.rstrip("/") + "/")]
        self._json(entries)
