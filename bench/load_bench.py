#!/usr/bin/env python3
"""Load benchmark for `saferoute serve` on loopback (not a test).

Many concurrent clients POST /v1/moderations for a fixed duration against a
running service (--url, optionally --pid to sample its RSS), or against one
this script starts (--launch BIN: the tiny fixture small guard, optionally a
router and the stand-in remote large guard from tests/e2e/).

Reports requests/s, latency percentiles, errors by kind, the service's RSS
sampled every second (flat memory = no leak), and where the time goes: the
per-stage latency fields of the response's `saferoute.latency_ms` object split
the client-observed latency into model time (small guard, router, large guard)
and service overhead (HTTP + JSON + queueing). JSON to stdout (or --out).

  build/venv/bin/python bench/load_bench.py --launch build/release/src/cli/saferoute \
      --duration 60 --concurrency 32
"""
import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TEXTS = [
    "What is the capital of France?",
    "How do I make a cake without eggs?",
    "Write a short poem about the sea.",
    "Explain how vaccines train the immune system, in two paragraphs.",
    "Tell me how to hotwire a car.",
    "Summarise the plot of Hamlet for a ten-year-old. " * 4,
    "Translate 'good morning' into German, French and Spanish.",
    "I feel hopeless and don't know what to do.",
]
STAGES = ("small_queue", "small", "router", "large_queue", "large", "total")
MODEL_STAGES = ("small", "router", "large")


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(q / 100 * (len(values) - 1)))))
    return values[k]


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Worker(threading.Thread):
    """One client: a keep-alive connection, requests back to back until stop."""

    def __init__(self, host, port, stop, inputs_per_request, seed, timeout):
        super().__init__(daemon=True)
        self.host, self.port, self.stop = host, port, stop
        self.inputs_per_request, self.timeout = inputs_per_request, timeout
        self.rng = random.Random(seed)
        self.latencies = []          # seconds, successful requests
        self.errors = {}             # kind -> count
        self.stage_ms = {s: [] for s in STAGES}
        self.overhead_ms = []        # client latency minus model stages, per request
        self.inputs = 0

    def run(self):
        conn = None
        while not self.stop.is_set():
            n = self.inputs_per_request
            body = json.dumps({"input": [self.rng.choice(TEXTS) for _ in range(n)] if n > 1
                               else self.rng.choice(TEXTS)})
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn.request("POST", "/v1/moderations", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                raw = resp.read()
                elapsed = time.perf_counter() - t0
                if resp.status != 200:
                    self.errors[f"http_{resp.status}"] = self.errors.get(f"http_{resp.status}", 0) + 1
                    continue
                results = json.loads(raw)["results"]
                if len(results) != n:
                    self.errors["wrong_result_count"] = self.errors.get("wrong_result_count", 0) + 1
                    continue
                self.latencies.append(elapsed)
                self.inputs += n
                # The slowest input of the request bounds its latency.
                per_input = [r.get("saferoute", {}).get("latency_ms") or {} for r in results]
                model_ms = max(sum(lat.get(s) or 0 for s in MODEL_STAGES) for lat in per_input)
                for s in STAGES:
                    vals = [lat[s] for lat in per_input if lat.get(s) is not None]
                    if vals:
                        self.stage_ms[s].append(max(vals))
                self.overhead_ms.append(elapsed * 1000 - model_ms)
            except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
                kind = type(e).__name__
                self.errors[kind] = self.errors.get(kind, 0) + 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url_host, port, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"service exited with {proc.returncode} at start")
        try:
            conn = http.client.HTTPConnection(url_host, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("service not healthy in time")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080", help="running service")
    p.add_argument("--pid", type=int, help="service PID, for RSS sampling")
    p.add_argument("--launch", metavar="SAFEROUTE_BIN", help="start `saferoute serve` here")
    p.add_argument("--model", default=os.path.join(
        ROOT, "../shared/fixtures/guard/llama_guard_tiny_fullvocab_bf16"))
    p.add_argument("--router", help="router file for --launch (default: none, nothing escalates)")
    p.add_argument("--standin-remote", action="store_true",
                   help="with --launch: a stand-in vLLM remote as the large guard")
    p.add_argument("--serve-arg", action="append", default=[], help="extra serve flag (repeat)")
    p.add_argument("--duration", type=float, default=60, help="seconds of load")
    p.add_argument("--warmup", type=float, default=3, help="seconds before measuring")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--inputs-per-request", type=int, default=1)
    p.add_argument("--timeout", type=float, default=30, help="per-request client timeout (s)")
    p.add_argument("--out", help="write the JSON report here too")
    args = p.parse_args()

    proc = remote = None
    host, port = "127.0.0.1", None
    try:
        if args.launch:
            port = free_port()
            cmd = [args.launch, "serve", "--listen-port", str(port), "--small-model-dir", args.model,
                   "--small-format", "llama-guard-3-1b"]
            if args.router:
                cmd += ["--router-path", args.router]
            if args.standin_remote:
                sys.path.insert(0, os.path.join(ROOT, "tests/e2e"))
                from standin_remote import StandInRemote
                remote = StandInRemote("vllm").start()
                cmd += ["--large-mode", "remote", "--remote-url", remote.url, "--remote-model",
                        remote.model, "--large-format", "llama-guard-3-8b", "--remote-tokenizer",
                        os.path.join(args.model, "tokenizer.json")]
            cmd += args.serve_arg
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            args.pid = proc.pid
        else:
            hostport = args.url.split("://", 1)[-1].rstrip("/")
            host, port = hostport.rsplit(":", 1)
            port = int(port)
        wait_healthy(host, port, proc)

        stop = threading.Event()
        workers = [Worker(host, port, stop, args.inputs_per_request, i, args.timeout)
                   for i in range(args.concurrency)]
        for w in workers:
            w.start()
        time.sleep(args.warmup)
        for w in workers:  # discard the warm-up
            w.latencies.clear(); w.errors.clear(); w.overhead_ms.clear(); w.inputs = 0
            for s in STAGES:
                w.stage_ms[s].clear()
        rss = []
        t_start = time.monotonic()
        while time.monotonic() - t_start < args.duration:
            if args.pid:
                rss.append([round(time.monotonic() - t_start, 1), rss_mib(args.pid)])
            time.sleep(1)
        measured = time.monotonic() - t_start
        stop.set()
        for w in workers:
            w.join(timeout=args.timeout + 5)
        hung = sum(w.is_alive() for w in workers)

        lat = [x * 1000 for w in workers for x in w.latencies]
        errors = {}
        for w in workers:
            for k, v in w.errors.items():
                errors[k] = errors.get(k, 0) + v
        stage = {s: [x for w in workers for x in w.stage_ms[s]] for s in STAGES}
        overhead = [x for w in workers for x in w.overhead_ms]
        rss_values = [v for _, v in rss if v is not None]
        report = {
            "target": f"http://{host}:{port}",
            "duration_s": round(measured, 1),
            "concurrency": args.concurrency,
            "inputs_per_request": args.inputs_per_request,
            "requests_ok": len(lat),
            "requests_per_s": round(len(lat) / measured, 1),
            "inputs_per_s": round(sum(w.inputs for w in workers) / measured, 1),
            "errors": errors,
            "clients_hung": hung,
            "latency_ms": {"p50": percentile(lat, 50), "p90": percentile(lat, 90),
                           "p99": percentile(lat, 99), "max": max(lat) if lat else None,
                           "mean": statistics.fmean(lat) if lat else None},
            "server_stage_ms_p50": {s: percentile(v, 50) for s, v in stage.items()},
            "server_stage_ms_p99": {s: percentile(v, 99) for s, v in stage.items()},
            # Client latency minus model stages (small + router + large): HTTP,
            # JSON, queueing, batching wait.
            "overhead_ms": {"p50": percentile(overhead, 50), "p99": percentile(overhead, 99)},
            "rss_mib": {"first": rss_values[0] if rss_values else None,
                        "last": rss_values[-1] if rss_values else None,
                        "max": max(rss_values) if rss_values else None,
                        "samples": rss},
        }
        text = json.dumps(report, indent=1)
        print(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text + "\n")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if remote is not None:
            remote.stop()


if __name__ == "__main__":
    main()
