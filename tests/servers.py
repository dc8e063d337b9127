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


class _Loopback:
    """An HTTP server of `handler` on 127.0.0.1 in a thread, for `with`; stopped on exit."""

    def __init__(self, handler):
        import threading
        from http.server import ThreadingHTTPServer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class FaultProxy(_Loopback):
    """An HTTP proxy on 127.0.0.1 in front of a real server that injects faults by plan.

    `plan(i)` gets the 0-based request number and returns None (forward) or a fault:
    "429" (with Retry-After: `retry_after` seconds), "500", "malformed" (truncated JSON body), "empty" (no choices),
    "html" (a 200 with an HTML page, as a captive proxy sends), "slow" (sleeps `slow_s`, then
    forwards), "cut" (connection closed mid-body), "down" (connection closed before any answer), "400", "401".
    Without an upstream it answers every forwarded request itself after `latency_s` with a
    canned critique (a local endpoint of known latency, for throughput benchmarks), or with
    `reply(request)` (the request's JSON body) when that is given. `bodies` keeps every request
    body it received.
    """

    def __init__(self, upstream: str | None, plan=lambda i: None, slow_s: float = 5.0, latency_s: float = 0.0,
                 retry_after: float = 0.2, reply=None):
        import threading
        from http.server import BaseHTTPRequestHandler

        self.upstream, self.plan, self.slow_s, self.latency_s = upstream, plan, slow_s, latency_s
        self.retry_after, self.reply = retry_after, reply
        self.requests, self.lock, self.faults, self.bodies = 0, threading.Lock(), [], []
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
                    proxy.bodies.append(body)
                fault = proxy.plan(i)
                if fault:
                    with proxy.lock:
                        proxy.faults.append(fault)
                err = _json.dumps({"error": {"message": f"injected {fault}", "type": "injected"}}).encode()
                if fault == "429":
                    return self._send(429, err, {"Retry-After": str(proxy.retry_after)})
                if fault == "500":
                    return self._send(500, err)
                if fault in ("400", "401"):
                    return self._send(int(fault), err)
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
                    text = proxy.reply(req) if proxy.reply else "The steps are checked.\nConclusion: right [END]"
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

        _Loopback.__init__(self, Handler)
        self.server.handle_error = lambda *a: None  # clients that time out or hang up are expected here


class BatchAPI(_Loopback):
    """The OpenAI Batch API (files + batches) on 127.0.0.1, in front of a real chat server: each
    request line of a batch is sent to `upstream`'s /v1/chat/completions when the batch runs.
    OpenAI's batch service cannot run here; this stands in for it, speaking its wire format.

    Faults by plan: `fail_create` (the first N `POST /v1/batches` answer `fail_status`: 503 with
    `x-should-retry: false`, a transient failure the client does not retry; 400 a refusal), `errors` (line numbers
    of the next batch's requests that fail inside it, reported in the error file), `expire` (line
    numbers left unanswered when it expires), `polls_in_progress` (polls that still see in_progress)."""

    def __init__(self, upstream: str, *, fail_create: int = 0, fail_status: int = 503, errors: set[int] = frozenset(),
                 expire: set[int] = frozenset(), polls_in_progress: int = 1):
        import email.policy
        import json
        import threading
        import time
        import urllib.request
        from email.parser import BytesParser
        from http.server import BaseHTTPRequestHandler

        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.uploads = self.creates = 0
        self.fail_create, self.errors, self.expire = fail_create, set(errors), set(expire)
        api = self

        def run(batch: dict, polls: list[int], errors: set[int], expire: set[int]) -> None:
            out, err = [], []
            for i, line in enumerate(api.files[batch["input_file_id"]].decode().splitlines()):
                req = json.loads(line)
                cid = req["custom_id"]
                if i in expire:
                    continue
                if i in errors:
                    err.append({"id": f"r-{cid}", "custom_id": cid, "response": None,
                                "error": {"code": "server_error", "message": "injected"}})
                    continue
                http = urllib.request.Request(upstream + req["url"], data=json.dumps(req["body"]).encode(),
                                              headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(http, timeout=300) as resp:
                    body = json.loads(resp.read())
                out.append({"id": f"r-{cid}", "custom_id": cid, "error": None,
                            "response": {"status_code": 200, "request_id": f"q-{cid}", "body": body}})
            for name, rows in (("output_file_id", out), ("error_file_id", err)):
                if rows:
                    fid = f"file-{len(api.files)}"
                    api.files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                    batch[name] = fid
            batch["request_counts"] = {"total": len(batch["_ids"]), "completed": len(out), "failed": len(err)}
            deadline = time.monotonic() + 600
            while polls[0] > 0:  # the client sees in_progress a few times first
                if time.monotonic() > deadline:  # a client that stopped polling: say so in the batch
                    batch["errors"] = {"object": "list", "data": [
                        {"code": "test_deadline", "message": "test BatchAPI: no poll within 600 s"}]}
                    batch["status"] = "failed"
                    return
                time.sleep(0.05)
            batch["status"] = "expired" if expire else "completed"

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status: int, obj, headers: dict | None = None) -> None:
                body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/v1/files":
                    msg = BytesParser(policy=email.policy.default).parsebytes(b"Content-Type: " + self.headers["Content-Type"].encode()
                                                   + b"\r\n\r\n" + data)
                    part = next(p for p in msg.iter_parts() if p.get_param("name", header="content-disposition")
                                == "file")
                    fid = f"file-{len(api.files)}"
                    api.files[fid] = part.get_payload(decode=True)
                    api.uploads += 1
                    return self._send(200, {"id": fid, "object": "file", "bytes": len(api.files[fid]),
                                            "created_at": 0, "filename": "requests.jsonl", "purpose": "batch",
                                            "status": "processed"})
                if self.path == "/v1/batches":
                    if api.fail_create > 0:
                        api.fail_create -= 1
                        return self._send(fail_status, {"error": {"message": "injected", "type": "invalid_request_error"}},
                                          {"x-should-retry": "false"})
                    req = json.loads(data)
                    bid = f"batch-{len(api.batches)}"
                    ids = [json.loads(x)["custom_id"] for x in api.files[req["input_file_id"]].decode().splitlines()]
                    batch = {"id": bid, "object": "batch", "endpoint": req["endpoint"], "errors": None,
                             "input_file_id": req["input_file_id"], "completion_window": req["completion_window"],
                             "status": "in_progress", "created_at": 0, "_ids": ids, "_polls": [polls_in_progress],
                             "request_counts": {"total": len(ids), "completed": 0, "failed": 0}}
                    api.batches[bid] = batch
                    api.creates += 1
                    threading.Thread(target=run, args=(batch, batch["_polls"], set(api.errors), set(api.expire)),
                                     daemon=True).start()
                    return self._send(200, {k: v for k, v in batch.items() if not k.startswith("_")})
                return self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_GET(self):
                parts = self.path.strip("/").split("/")
                if parts[:2] == ["v1", "batches"] and parts[2] in api.batches:
                    batch = api.batches[parts[2]]
                    batch["_polls"][0] -= 1
                    return self._send(200, {k: v for k, v in batch.items() if not k.startswith("_")})
                if parts[:2] == ["v1", "files"] and parts[-1] == "content" and parts[2] in api.files:
                    return self._send(200, api.files[parts[2]])
                return self._send(404, {"error": {"message": f"no route {self.path}"}})

        _Loopback.__init__(self, Handler)
