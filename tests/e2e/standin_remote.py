"""A stand-in remote large guard for end-to-end tests and the load benchmark.

Answers like vLLM's OpenAI-compatible ``POST /v1/completions`` (token-id prompt,
``logprobs``) and llama.cpp server's ``POST /completion`` (``n_probs``), in the
shapes of ../shared/docs/guard-models.md §6.1-6.2, plus ``GET /health``. It can
be switched at run time to be slow, to hang (never answer), to trickle its
answer a byte at a time, to answer garbage or HTTP 500, or to be down (its
port closed). It can serve HTTPS (``tls=(cert, key)``) and require an API key
(``api_key``: ``Authorization: Bearer <key>``, 401 otherwise, as vLLM's
``--api-key``). It checks every request body it receives against the
documented request shape and records violations.

Standard library only. Run alone:  python standin_remote.py --port 8000
"""
import argparse
import http.server
import json
import math
import os
import ssl
import sys
import threading
import time

SAFE_ID, UNSAFE_ID, VERDICT_POSITION_ID = 19193, 39257, 271
MODES = ("ok", "slow", "hang", "trickle", "garbage", "error500")


class _Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True   # same port after stop(): "down, then up again" is real
    daemon_threads = True
    request_queue_size = 128     # the default backlog of 5 drops SYNs under load

    def handle_error(self, request, client_address):
        # A client that timed out closed its end while a slow answer was being
        # written: expected in the fault tests, not worth a traceback.
        # A client that refused the certificate, likewise.
        if not isinstance(sys.exc_info()[1],
                          (BrokenPipeError, ConnectionResetError, ssl.SSLError)):
            super().handle_error(request, client_address)


class StandInRemote:
    """One stand-in server; thread-safe switches; start()/stop() (= port closed)."""

    def __init__(self, kind="vllm", model="llama-guard-3-8b", p_unsafe=0.9,
                 decode_text="unsafe\nS1", top_k=20, host="127.0.0.1", port=0, tls=None,
                 api_key=None):
        assert kind in ("vllm", "llamacpp")
        self.kind, self.model, self.top_k = kind, model, top_k
        self.host, self.port = host, port
        self.tls = tls                  # (cert_path, key_path): serve HTTPS
        self.api_key = api_key          # required as "Authorization: Bearer <key>"
        self.unauthorized = 0           # requests refused for a missing or wrong key
        self.p_unsafe = p_unsafe
        self.decode_text = decode_text
        self.mode = "ok"
        self.slow_s = 2.0
        self.trickle_interval_s = 0.1   # "trickle": one byte of the answer per interval
        self.hanging = 0                # "hang": requests being held right now
        self._stopping = threading.Event()
        self.lock = threading.Lock()
        self.received = 0            # scoring requests that reached the server
        self.bad_requests = []       # request-shape violations (should stay empty)
        self.last_body = None
        self._httpd = None
        self._thread = None

    # -- control ---------------------------------------------------------
    def start(self):
        self._stopping.clear()
        self._httpd = _Server((self.host, self.port), _make_handler(self))
        self.port = self._httpd.server_address[1]
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            # The handshake happens in the handler's thread, not in accept().
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True,
                                                     do_handshake_on_connect=False)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()  # releases "hang" and "trickle" handlers
        deadline = time.monotonic() + 5
        while self.hanging and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def set_mode(self, mode):
        assert mode in MODES, mode
        with self.lock:
            self.mode = mode

    def count(self):
        with self.lock:
            return self.received

    # -- answers -----------------------------------------------------------
    def check_request(self, path, body):
        """Returns a list of violations of the documented request shape."""
        problems = []
        if not isinstance(body, dict):
            return [f"{path}: body is not a JSON object"]
        prompt = body.get("prompt")
        if not (isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt)):
            problems.append(f"{path}: 'prompt' is not a non-empty list of token ids")
        else:
            if prompt[-1] != VERDICT_POSITION_ID:
                problems.append(f"{path}: prompt does not end with the verdict position 271")
            if 128000 not in prompt[:2]:
                problems.append(f"{path}: no <|begin_of_text|> at the start of the prompt")
            if prompt.count(128000) != 1:
                problems.append(f"{path}: <|begin_of_text|> appears {prompt.count(128000)} times")
        if body.get("temperature") != 0:
            problems.append(f"{path}: temperature is not 0")
        if path == "/v1/completions":
            if body.get("model") != self.model:
                problems.append(f"{path}: model {body.get('model')!r} != {self.model!r}")
            if body.get("logprobs") != self.top_k:
                problems.append(f"{path}: logprobs {body.get('logprobs')!r} != {self.top_k}")
            if body.get("max_tokens") not in (1, 12):
                problems.append(f"{path}: max_tokens {body.get('max_tokens')!r}")
        else:
            if body.get("n_probs") != self.top_k:
                problems.append(f"{path}: n_probs {body.get('n_probs')!r} != {self.top_k}")
            if body.get("n_predict") not in (1, 12):
                problems.append(f"{path}: n_predict {body.get('n_predict')!r}")
            if body.get("cache_prompt") is not False:
                problems.append(f"{path}: cache_prompt is not false")
        return problems

    def answer(self, path, body):
        p = self.p_unsafe
        n_new = body.get("max_tokens", body.get("n_predict", 1))
        text = self.decode_text if n_new > 1 else ("unsafe" if p > 0.5 else "safe")
        top_id = UNSAFE_ID if p > 0.5 else SAFE_ID
        # Filler tokens make the top-k list realistic; they carry no mass here.
        lu, ls = math.log(p), math.log(1 - p)
        if path == "/v1/completions":
            top = {f"token_id:{UNSAFE_ID}": lu, f"token_id:{SAFE_ID}": ls,
                   "token_id:198": -20.0, "token_id:50": -21.5}
            return {"id": "cmpl-standin", "object": "text_completion", "created": int(time.time()),
                    "model": self.model,
                    "choices": [{"index": 0, "text": text, "finish_reason": "length",
                                 "logprobs": {"tokens": [f"token_id:{top_id}"],
                                              "token_logprobs": [max(lu, ls)],
                                              "top_logprobs": [top], "text_offset": [0]}}],
                    "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": 1,
                              "total_tokens": len(body["prompt"]) + 1}}
        top = [{"id": UNSAFE_ID, "token": "unsafe", "bytes": list(b"unsafe"), "logprob": lu},
               {"id": SAFE_ID, "token": "safe", "bytes": list(b"safe"), "logprob": ls},
               {"id": 198, "token": "\n", "bytes": [10], "logprob": -20.0}]
        top.sort(key=lambda e: -e["logprob"])
        return {"content": text, "tokens": [top_id], "stop": True, "stop_type": "limit",
                "completion_probabilities": [{"id": top_id, "token": text.split("\n")[0],
                                              "logprob": max(lu, ls), "top_logprobs": top}]}


def _make_handler(remote):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _send(self, status, payload, content_type="application/json"):
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True

        def _authorized(self):
            if remote.api_key is None:
                return True
            if self.headers.get("Authorization") == f"Bearer {remote.api_key}":
                return True
            with remote.lock:
                remote.unauthorized += 1
            self._send(401, {"error": {"message": "Unauthorized", "type": "invalid_request_error",
                                       "code": 401}})
            return False

        def _trickle(self, payload):
            """The whole answer, status line included, one byte per interval."""
            data = json.dumps(payload).encode()
            raw = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   b"Content-Length: " + str(len(data)).encode() +
                   b"\r\nConnection: close\r\n\r\n" + data)
            for i in range(len(raw)):
                if remote._stopping.wait(remote.trickle_interval_s):
                    break
                self.wfile.write(raw[i:i + 1])
                self.wfile.flush()
            self.close_connection = True

        def do_GET(self):
            if not self._authorized():
                return
            if self.path == "/health":
                self._send(200, {"status": "ok"})
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": remote.model, "object": "model"}]})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self._authorized():
                return
            expected = "/v1/completions" if remote.kind == "vllm" else "/completion"
            if self.path != expected:
                self._send(404, {"error": f"no route {self.path}"})
                return
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            with remote.lock:
                remote.received += 1
                remote.last_body = body
                remote.bad_requests.extend(remote.check_request(self.path, body))
                mode = remote.mode
            if mode == "hang":
                # Read the request, never answer; the client must give up.
                with remote.lock:
                    remote.hanging += 1
                remote._stopping.wait(60)
                with remote.lock:
                    remote.hanging -= 1
                self.close_connection = True
            elif mode == "trickle":
                if isinstance(body, dict) and body.get("prompt"):
                    self._trickle(remote.answer(self.path, body))
            elif mode == "error500":
                self._send(500, b"internal error: out of KV cache", "text/plain")
            elif mode == "garbage":
                self._send(200, b'{"choices": [{"index": 0, "logprobs": nul', "application/json")
            else:
                if mode == "slow":
                    time.sleep(remote.slow_s)
                if not isinstance(body, dict) or not body.get("prompt"):
                    self._send(400, {"error": "bad request"})
                    return
                self._send(200, remote.answer(self.path, body))

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("vllm", "llamacpp"), default="vllm")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default="llama-guard-3-8b")
    parser.add_argument("--p-unsafe", type=float, default=0.9)
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (and --tls-key)")
    parser.add_argument("--tls-key")
    parser.add_argument("--api-key-env", help="require the API key held by this environment variable")
    args = parser.parse_args()
    api_key = os.environ[args.api_key_env] if args.api_key_env else None
    remote = StandInRemote(kind=args.kind, model=args.model, p_unsafe=args.p_unsafe,
                           port=args.port, api_key=api_key,
                           tls=(args.tls_cert, args.tls_key) if args.tls_cert else None).start()
    remote.set_mode(args.mode)
    print(f"stand-in {args.kind} remote guard on {remote.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        remote.stop()


if __name__ == "__main__":
    main()
