"""A scripted OpenAI-compatible server on loopback (real HTTP): ``POST /v1/chat/completions`` replays
canned answers in order and records every request. A step is a string (the answer), or a dict:
``{"sleep": s}`` answers late, ``{"status": 400, "if_schema": True}`` refuses requests that ask for
``response_format`` (a server without structured output)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedLLM:
    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                step = server.script[0] if server.script else "{}"
                if isinstance(step, dict) and step.get("if_schema") and "response_format" not in body:
                    server.script.pop(0)  # the refusal is spent: the next step answers
                    step = server.script[0] if server.script else "{}"
                if isinstance(step, dict) and step.get("status"):
                    self.send_response(step["status"])
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "response_format is not supported"}}')
                    return
                server.script.pop(0) if server.script else None
                if isinstance(step, dict) and step.get("sleep"):
                    time.sleep(step["sleep"])
                    step = step.get("then", "{}")
                reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model", ""),
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": step},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}
                data = json.dumps(reply).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedLLM:
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
