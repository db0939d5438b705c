"""A Hugging Face Hub for the tests: its upload API served on 127.0.0.1, and a Hub cache laid out as
``snapshot_download`` leaves it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List


def place_in_hub_cache(folder: Path, cache: Path, repo_id: str, commit: str, refs=("main",)) -> Path:
    """Put ``folder``'s files into a Hugging Face Hub cache as ``snapshot_download`` leaves a model repo:
    ``models--<ns>--<name>/blobs/<sha256>``, ``snapshots/<commit>/<path>`` as relative links to the
    blobs, ``refs/<ref>`` holding the commit hash. Returns the snapshot folder."""
    import hashlib

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for src in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = src.relative_to(folder)
        data = src.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


class FakeHub:
    """The part of the Hugging Face Hub's HTTP API that ``HfApi.create_repo`` and ``HfApi.upload_folder``
    use (repo creation, README metadata validation, preupload, commit), served on 127.0.0.1 and recording
    what arrives. Every file
    is accepted as a regular (base64-in-the-commit) upload, so the bytes land here. Any other request is
    answered 404 and recorded. The server shuts itself down after ``lifetime`` seconds at the latest."""

    def __init__(self, lifetime: float = 120.0):
        import base64
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.created: List[dict] = []
        self.validated: List[str] = []  # README.md texts sent for metadata validation
        self.commits: List[dict] = []  # {"repo", "revision", "summary", "files": {path: bytes}}
        self.unexpected: List[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.split("?")[0]
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
                if path == "/api/validate-yaml":  # the Hub checks a README's metadata before the upload
                    from huggingface_hub import ModelCard

                    body = json.loads(raw)
                    hub.validated.append(body["content"])
                    try:
                        ModelCard(body["content"])
                    except Exception as e:
                        return self._reply(400, {"errors": [{"message": str(e)}]})
                    return self._reply(200, {"errors": [], "warnings": []})
                if path == "/api/repos/create":
                    body = json.loads(raw)
                    hub.created.append(body)
                    return self._reply(200, {"url": f"{hub.url}/{body['organization']}/{body['name']}"})
                if m and m.group(2) == "preupload":
                    files = json.loads(raw)["files"]
                    modes = [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                    return self._reply(200, {"files": modes, "commitOid": "0" * 40})
                if m and m.group(2) == "commit":
                    lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
                    files = {
                        x["value"]["path"]: base64.b64decode(x["value"]["content"])
                        for x in lines
                        if x["key"] == "file"
                    }
                    summary = next(x["value"]["summary"] for x in lines if x["key"] == "header")
                    oid = f"{len(hub.commits) + 1:040x}"
                    hub.commits.append(
                        dict(repo=m.group(1), revision=m.group(3), summary=summary, files=files)
                    )
                    return self._reply(
                        200, {"commitUrl": f"{hub.url}/{m.group(1)}/commit/{oid}", "commitOid": oid}
                    )
                hub.unexpected.append(f"POST {self.path}")
                self._reply(404, {"error": "not served by FakeHub"})

            def do_GET(self):
                hub.unexpected.append(f"GET {self.path}")
                self._reply(404, {"error": "not served by FakeHub"})

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        self._timer = threading.Timer(lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()

    def files(self, repo_id: str) -> Dict[str, bytes]:
        """The repo's files after all commits so far."""
        out: Dict[str, bytes] = {}
        for commit in self.commits:
            if commit["repo"] == repo_id:
                out.update(commit["files"])
        return out

    def close(self) -> None:
        self._timer.cancel()
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()
