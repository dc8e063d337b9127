"""A real OpenAI-compatible server (`transformers serve`) on 127.0.0.1 for tests; stopped after use."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def transformers_serve(model_dir: Path, log_path: Path):
    port = free_port()
    exe = Path(sys.executable).with_name("transformers")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(exe), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                                 "--device", "cpu"], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.time() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                    break
                except OSError:
                    if proc.poll() is not None or time.time() > deadline:
                        raise RuntimeError(f"transformers serve did not start: {log_path.read_text()[-2000:]}") from None
                    time.sleep(0.5)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of a real server that injects faults by plan.

    `plan(i)` gets the 0-based request number and returns None (forward) or a fault:
    "429" (with Retry-After), "500", "malformed" (truncated JSON body), "empty" (no choices),
    "html" (a 200 with an HTML page, as a captive proxy sends), "slow" (sleeps `slow_s`, then
    forwards), "cut" (connection closed mid-body), "down" (connection closed before any answer), "401".
    Without an upstream it answers every forwarded request itself after `latency_s` with a
    canned critique (a local endpoint of known latency, for throughput benchmarks).
    """

    def __init__(self, upstream: str | None, plan=lambda i: None, slow_s: float = 5.0, latency_s: float = 0.0):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.upstream, self.plan, self.slow_s, self.latency_s = upstream, plan, slow_s, latency_s
        self.requests, self.lock, self.faults = 0, threading.Lock(), []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status: int, body: bytes, headers: dict | None = None, length: int | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if length is None else length))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def do_GET(self):
                self._send(200, b'{"status": "ok"}')

            def do_POST(self):
                import json as _json
                import time as _time
                import urllib.request

                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy.lock:
                    i = proxy.requests
                    proxy.requests += 1
                fault = proxy.plan(i)
                if fault:
                    with proxy.lock:
                        proxy.faults.append(fault)
                err = _json.dumps({"error": {"message": f"injected {fault}", "type": "injected"}}).encode()
                if fault == "429":
                    return self._send(429, err, {"Retry-After": "0.2"})
                if fault == "500":
                    return self._send(500, err)
                if fault == "401":
                    return self._send(401, err)
                if fault == "malformed":
                    return self._send(200, b'{"id": "x", "object": "chat.completion", "choices": [{"ind')
                if fault == "html":
                    body = b"<html><body>502 Bad Gateway</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return None
                if fault == "down":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return None
                if fault == "empty":
                    return self._send(200, _json.dumps({"id": "x", "object": "chat.completion", "created": 0,
                                                        "model": "m", "choices": []}).encode())
                if fault == "cut":
                    self._send(200, b'{"id": "x", "choi', length=4096)
                    self.close_connection = True
                    return
                if fault == "slow":
                    _time.sleep(proxy.slow_s)
                if proxy.upstream is None:
                    _time.sleep(proxy.latency_s)
                    req = _json.loads(body)
                    text = "The steps are checked.\nConclusion: right [END]"
                    return self._send(200, _json.dumps({
                        "id": f"c{i}", "object": "chat.completion", "created": 0, "model": req.get("model", "m"),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62}}).encode())
                req = urllib.request.Request(proxy.upstream + self.path, data=body,
                                             headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=300) as resp:
                        return self._send(resp.status, resp.read())
                except urllib.error.HTTPError as e:
                    return self._send(e.code, e.read())
                except (BrokenPipeError, ConnectionResetError):
                    return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *a: None  # clients that time out or hang up are expected here
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
