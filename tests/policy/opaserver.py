"""A loopback server speaking OPA's REST API contract (Data API and Policy API), for tests.

No OPA binary can be installed here, so this implements the parts attest's
remote engine uses — ``POST /v1/data/<path>`` with ``{"input": …}`` answering
``{"result": …}`` (``{}`` when undefined), ``GET /v1/policies[/<id>]`` —
evaluating with regopy behind it, and answers errors the way OPA does
(``{"code": …, "message": …}`` with HTTP 400/500).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import regopy
from regopy import rego_shared as c

from tests.support.net import free_port


class FakeOpa:
    def __init__(self, modules: dict[str, str]) -> None:
        self.modules = modules
        self.port = free_port()
        self.requests: list[tuple[str, str, dict | None]] = []
        self.hang_seconds = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def evaluate(self, path: str, input_doc: object, strict: bool) -> tuple[int, dict]:
        with self._lock:
            interpreter = regopy.Interpreter()
            interpreter.strict_built_in_errors = strict
            for name, text in self.modules.items():
                interpreter.add_module(name, text)
            interpreter.set_input_term(json.dumps(input_doc))
            output = c.rego_query(interpreter._impl, "data." + path.strip("/").replace("/", "."))
            if not output or not c.rego_output_ok(output):
                return 500, {"code": "internal_error", "message": "eval_builtin_error: failed"}
            text = c.rego_output_string(output)
            c.rego_free_output(output)
        if text == "undefined":
            return 200, {}
        value = json.loads(text)
        return 200, {"result": value["expressions"][0]}

    def start(self) -> FakeOpa:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                return

            def _answer(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                fake.requests.append(("GET", path, None))
                if path.rstrip("/") == "/v1/policies":
                    result = [{"id": k, "raw": v} for k, v in fake.modules.items()]
                    self._answer(200, {"result": result})
                    return
                policy_id = path.removeprefix("/v1/policies/")
                if policy_id in fake.modules:
                    self._answer(200, {"result": {"id": policy_id, "raw": fake.modules[policy_id]}})
                    return
                self._answer(404, {"code": "resource_not_found", "message": "not found"})

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._answer(400, {"code": "invalid_parameter", "message": "body is not JSON"})
                    return
                fake.requests.append(("POST", self.path, body))
                if fake.hang_seconds:
                    threading.Event().wait(fake.hang_seconds)
                if not parts.path.startswith("/v1/data/"):
                    self._answer(404, {"code": "resource_not_found", "message": "not found"})
                    return
                strict = parse_qs(parts.query).get("strict-builtin-errors") == ["true"]
                status, payload = fake.evaluate(
                    parts.path.removeprefix("/v1/data/"), body.get("input"), strict
                )
                self._answer(status, payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._server.handle_error = lambda *_args: None  # clients that gave up (timeout tests)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
