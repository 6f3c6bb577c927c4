#!/usr/bin/env python3
"""Load benchmark for `saferoute serve` on loopback (not a test).

Concurrent clients POST /v1/moderations for a fixed duration against a
running service (--url, optionally --pid to sample its RSS), or against one
this script starts (--launch BIN: the tiny fixture small guard, optionally a
router and the stand-in remote large guard from tests/e2e/).

Three clients (--client):
  python  threads with http.client (default); overhead is paired per request.
  open    open-loop arrivals (--rate, a comma list of requests/s, one run each;
          Poisson, seeded): each request is sent at its arrival time whatever
          the service is doing, as independent users would, so an overloaded
          service cannot slow the offered load down. Reports goodput (answers
          with status 200 within the deadline, per second), 429s, 504s and
          latency percentiles: what overload costs.
  wrk     the native load generator `wrk` with bench/moderations.lua, so the
          client's own cost does not inflate the overhead; one connection per
          wrk thread, so the script also pairs each response with its request.
          Benchmark-only tool, not a build or test dependency:
          `apt-get install -y wrk` (Debian).
Each level of --concurrency (comma list) is one run of --duration seconds after
--warmup seconds of discarded load.

Reports requests/s, client latency percentiles, errors by kind, the service's
RSS (sampled every second: flat memory = no leak), and where the time goes:
the per-stage fields of each response's `saferoute.latency_ms` give the model
time (small guard + router + large guard); overhead = client latency - model
time (HTTP + JSON + queueing + batching wait), per request (python, and wrk's
"paired"), and for wrk also as client p50 - model p50 of the two distributions. The service's
/metrics (scraped before and after each run) give exact means of the stage
times and of the request handler (the handler's mean beyond the model time:
JSON + queue inside the service).
JSON to stdout (or --out).

  build/venv/bin/python bench/load_bench.py --launch build/release/src/cli/saferoute \
      --duration 60 --concurrency 32
  python3 bench/load_bench.py --client wrk --launch build/release/src/cli/saferoute \
      --concurrency 1,16 --duration 60 --serve-arg=--small-batch-wait-ms=0
  python3 bench/load_bench.py --client open --rate 0.7,1.4,2.8 --duration 60 \
      --launch build/release/src/cli/saferoute --model /tmp/lg3-1b-random
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import random
import re
import shutil
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


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def scrape_metrics(host, port):
    """{(name, labels text): value} from the service's /metrics."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    text = resp.read().decode()
    if resp.status != 200:
        raise SystemExit(f"/metrics answered {resp.status}")
    out = {}
    for line in text.splitlines():
        m = METRIC_LINE.match(line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def metric_means_ms(before, after):
    """Exact means over a run, from histogram _sum/_count deltas (ms)."""
    series = {"small": ("saferoute_stage_latency_seconds", '{stage="small"}'),
              "small_queue": ("saferoute_stage_latency_seconds", '{stage="small_queue"}'),
              "router": ("saferoute_stage_latency_seconds", '{stage="router"}'),
              "large": ("saferoute_stage_latency_seconds", '{stage="large"}'),
              # Inside the small guard's time: its phases (the batch's prefill
              # and category decode each input ran in).
              "small_tokenize": ("saferoute_guard_phase_seconds",
                                 '{stage="small",phase="tokenize"}'),
              "small_forward": ("saferoute_guard_phase_seconds",
                                '{stage="small",phase="forward"}'),
              "small_decode": ("saferoute_guard_phase_seconds",
                               '{stage="small",phase="decode"}'),
              "http_handler": ("saferoute_http_request_duration_seconds",
                               '{route="/v1/moderations"}')}
    means = {}
    for key, (name, labels) in series.items():
        count = after.get((name + "_count", labels), 0) - before.get((name + "_count", labels), 0)
        total = after.get((name + "_sum", labels), 0) - before.get((name + "_sum", labels), 0)
        means[key] = round(total / count * 1000, 4) if count > 0 else None
        means[key + "_count"] = int(count)
    return means


class RssSampler(threading.Thread):
    """The service's RSS every `interval` seconds while a run lasts."""

    def __init__(self, pid, interval=1.0):
        super().__init__(daemon=True)
        self.pid, self.stop, self.samples = pid, threading.Event(), []
        self.interval = interval
        self.t0 = time.monotonic()

    def run(self):
        while not self.stop.is_set():
            if self.pid:
                self.samples.append([round(time.monotonic() - self.t0, 1), rss_mib(self.pid)])
            self.stop.wait(self.interval)

    def summary(self):
        points = [(t, v) for t, v in self.samples if v is not None]
        values = [v for _, v in points]
        out = {"first": values[0] if values else None, "last": values[-1] if values else None,
               "max": max(values) if values else None, "min": min(values) if values else None}
        # Least-squares slope of RSS over time (MiB per minute), over the whole
        # run and over its second half (after warm-up effects such as page
        # faults on first touch): flat memory means no leak.
        out["slope_mib_per_min"] = rss_slope(points)
        out["slope_second_half_mib_per_min"] = rss_slope(points[len(points) // 2:])
        out["samples"] = self.samples
        return out


def rss_slope(points):
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return round(60 * sum((t - mt) * (v - mv) for t, v in points) / var, 3)


def run_python(host, port, concurrency, args):
    stop = threading.Event()
    workers = [Worker(host, port, stop, args.inputs_per_request, i, args.timeout)
               for i in range(concurrency)]
    for w in workers:
        w.start()
    time.sleep(args.warmup)
    for w in workers:  # discard the warm-up
        w.latencies.clear(); w.errors.clear(); w.overhead_ms.clear(); w.inputs = 0
        for s in STAGES:
            w.stage_ms[s].clear()
    metrics_before = scrape_metrics(host, port)
    rss = RssSampler(args.pid, args.rss_interval)
    rss.start()
    t_start = time.monotonic()
    time.sleep(args.duration)
    measured = time.monotonic() - t_start
    stop.set()
    for w in workers:
        w.join(timeout=args.timeout + 5)
    rss.stop.set()
    rss.join()
    metrics_after = scrape_metrics(host, port)
    hung = sum(w.is_alive() for w in workers)

    lat = [x * 1000 for w in workers for x in w.latencies]
    errors = {}
    for w in workers:
        for k, v in w.errors.items():
            errors[k] = errors.get(k, 0) + v
    stage = {s: [x for w in workers for x in w.stage_ms[s]] for s in STAGES}
    overhead = [x for w in workers for x in w.overhead_ms]
    return {
        "client": "python",
        "duration_s": round(measured, 1),
        "concurrency": concurrency,
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
        "server_metrics_mean_ms": metric_means_ms(metrics_before, metrics_after),
        "rss_mib": rss.summary(),
    }


def open_loop_request(host, port, body, deadline_ms, timeout):
    """One request on its own connection: (status or error kind, seconds, Retry-After)."""
    headers = {"Content-Type": "application/json"}
    if deadline_ms:
        headers["X-SafeRoute-Deadline-Ms"] = str(deadline_ms)
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", "/v1/moderations", body, headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.perf_counter() - t0, resp.getheader("Retry-After")
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__, time.perf_counter() - t0, None
    finally:
        conn.close()


def run_open(host, port, rate, args):
    """Poisson arrivals at `rate`/s for warm-up + duration; the warm-up's are not counted."""
    rng = random.Random(args.seed)
    total = args.warmup + args.duration
    arrivals, t = [], rng.expovariate(rate)
    while t < total:
        arrivals.append(t)
        t += rng.expovariate(rate)
    deadline_s = (args.deadline_ms or 5000) / 1000
    results = []  # (arrival, dispatch delay, status, seconds, retry_after)
    lock = threading.Lock()

    def send(arrival, body, t_start):
        delay = time.monotonic() - t_start - arrival
        status, seconds, retry_after = open_loop_request(host, port, body, args.deadline_ms,
                                                         args.timeout)
        with lock:
            results.append((arrival, delay, status, seconds, retry_after))

    metrics_before = None
    rss = RssSampler(args.pid, args.rss_interval)
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.max_in_flight) as pool:
        t_start = time.monotonic()
        for arrival in arrivals:
            wait = t_start + arrival - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if metrics_before is None and arrival >= args.warmup:
                metrics_before = scrape_metrics(host, port)
                rss.start()
            body = json.dumps({"input": rng.choice(TEXTS)})
            pool.submit(send, arrival, body, t_start)
        # Wait out the load window, then for every answer.
        wait = t_start + total - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    rss.stop.set()
    if rss.is_alive():
        rss.join()
    metrics_after = scrape_metrics(host, port)
    if metrics_before is None:
        metrics_before = metrics_after

    counted = [r for r in results if r[0] >= args.warmup]
    statuses = {}
    for _, _, status, _, _ in counted:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    ok = [s for _, _, status, s, _ in counted if status == 200]
    ok_in_time = [s for s in ok if s <= deadline_s]
    refused = [s for _, _, status, s, _ in counted if status == 429]
    late_dispatch = sum(1 for _, d, _, _, _ in counted if d > 0.1)
    retry_after = {}
    for _, _, status, _, ra in counted:
        if status == 429 and ra is not None:
            retry_after[ra] = retry_after.get(ra, 0) + 1

    def pct(values, q):
        v = percentile([x * 1000 for x in values], q)
        return round(v, 1) if v is not None else None

    return {
        "client": "open",
        "offered_per_s": rate,
        "duration_s": args.duration,
        "deadline_s": deadline_s,
        "sent": len(counted),
        "goodput_per_s": round(len(ok_in_time) / args.duration, 3),
        "ok_within_deadline": len(ok_in_time),
        "ok_after_deadline": len(ok) - len(ok_in_time),
        "status_429_per_s": round(len(refused) / args.duration, 3),
        "status_504_per_s": round(statuses.get("504", 0) / args.duration, 3),
        "statuses": statuses,
        "latency_ms_200": {"p50": pct(ok, 50), "p99": pct(ok, 99), "max": pct(ok, 100)},
        "latency_ms_429": {"p50": pct(refused, 50), "p99": pct(refused, 99)},
        "latency_ms_504": {"p50": pct([s for _, _, st, s, _ in counted if st == 504], 50)},
        "retry_after_s": retry_after,
        # Requests sent more than 100 ms after their arrival time (the
        # generator fell behind: raise --max-in-flight).
        "late_dispatch": late_dispatch,
        "server_metrics_mean_ms": metric_means_ms(metrics_before, metrics_after),
        "rss_mib": rss.summary(),
    }


WRK_MARKER = "SAFEROUTE_WRK_JSON "


def wrk_once(host, port, concurrency, seconds, args):
    """One wrk run; the JSON its Lua done() printed."""
    # One connection per wrk thread: the Lua script can then pair each
    # response with its request ("paired") and time it.
    cmd = ["wrk", "-t", str(concurrency), "-c", str(concurrency), "-d", f"{seconds:g}s",
           "--timeout", f"{args.timeout:g}s", "-s", os.path.join(HERE, "moderations.lua"),
           f"http://{host}:{port}/v1/moderations", "--", "paired"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + args.timeout + 30)
    lines = [l for l in done.stdout.splitlines() if l.startswith(WRK_MARKER)]
    if done.returncode != 0 or len(lines) != 1:
        raise SystemExit(f"wrk failed (exit {done.returncode}): {' '.join(cmd)}\n"
                         f"{done.stdout}\n{done.stderr}")
    return json.loads(lines[0][len(WRK_MARKER):]), cmd


def run_wrk(host, port, concurrency, args):
    if args.warmup > 0:
        wrk_once(host, port, concurrency, args.warmup, args)
    metrics_before = scrape_metrics(host, port)
    rss = RssSampler(args.pid, args.rss_interval)
    rss.start()
    result, cmd = wrk_once(host, port, concurrency, args.duration, args)
    rss.stop.set()
    rss.join()
    metrics_after = scrape_metrics(host, port)
    client = result["client_latency_ms"]
    model = result["server_model_ms"]
    means = metric_means_ms(metrics_before, metrics_after)

    def diff(a, b):
        return round(a - b, 4) if a is not None and b is not None else None

    return {
        "client": "wrk",
        "command": " ".join(cmd),
        "concurrency": concurrency,
        "duration_s": round(result["duration_s"], 1),
        "requests": result["requests"],
        "requests_per_s": round(result["requests_per_s"], 1),
        "errors": result["errors"],
        "client_latency_ms": client,
        # Per response: small + router + large stage times the service measured.
        "server_model_ms": model,
        # The service's own total per input (its queue + batching + model).
        "server_total_ms": result["server_total_ms"],
        "overhead_ms": {
            # HTTP + JSON + queue + batching wait, by the definition.
            # Unreliable when model time is multi-modal (a mix of input
            # lengths, S-code decodes): the two medians can fall in different
            # modes. The paired figures below do not have that problem.
            "p50": diff(client["p50"], model["p50"]),
            # Per request: that request's client latency - its model time.
            "paired": result["paired_overhead_ms"],
            # Without the in-service queue/batching: only HTTP, JSON, threads.
            "p50_outside_cascade": diff(client["p50"], result["server_total_ms"]["p50"]),
            "mean_inside_handler_beyond_model":
                diff(means["http_handler"],
                     sum(means[s] or 0 for s in ("small", "router", "large"))
                     if means["small"] is not None else None),
        },
        "server_metrics_mean_ms": means,
        "rss_mib": rss.summary(),
    }


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
    p.add_argument("--client", choices=("python", "wrk", "open"), default="python")
    p.add_argument("--rate", default=None,
                   help="open client: comma list of offered loads in requests/s, one run each")
    p.add_argument("--deadline-ms", type=float, default=None,
                   help="X-SafeRoute-Deadline-Ms on every request (open client; default: none, "
                        "the service's default deadline, taken as 5000 for goodput)")
    p.add_argument("--max-in-flight", type=int, default=512,
                   help="open client: most requests outstanding at once")
    p.add_argument("--seed", type=int, default=1, help="open client: arrival times and texts")
    p.add_argument("--rss-interval", type=float, default=1.0, help="seconds between RSS samples")
    p.add_argument("--duration", type=float, default=60, help="seconds of load per run")
    p.add_argument("--warmup", type=float, default=3, help="seconds of discarded load per run")
    p.add_argument("--concurrency", default=None,
                   help="comma list of client counts, one run each (python: 32, wrk: 1,16)")
    p.add_argument("--inputs-per-request", type=int, default=1,
                   help="python client only; wrk sends one input per request")
    p.add_argument("--timeout", type=float, default=30, help="per-request client timeout (s)")
    p.add_argument("--out", help="write the JSON report here too")
    args = p.parse_args()
    if args.client == "open":
        try:
            levels = [float(x) for x in (args.rate or "").split(",")]
        except ValueError:
            raise SystemExit(f"--rate: not a comma list of numbers: {args.rate!r}")
        if not all(r > 0 for r in levels):
            raise SystemExit("--rate: every offered load must be > 0 requests/s")
    else:
        levels_text = args.concurrency or ("1,16" if args.client == "wrk" else "32")
        try:
            levels = [int(x) for x in levels_text.split(",")]
        except ValueError:
            raise SystemExit(f"--concurrency: not a comma list of integers: {levels_text!r}")
        if any(c < 1 for c in levels):
            raise SystemExit("--concurrency: every level must be >= 1")
    if args.client == "wrk":
        if shutil.which("wrk") is None:
            raise SystemExit("--client wrk needs the `wrk` load generator (benchmark only, not a "
                             "build or test dependency): apt-get install -y wrk")
        if args.inputs_per_request != 1:
            raise SystemExit("--client wrk sends one input per request")

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

        rss_at_start = rss_mib(args.pid) if args.pid else None
        run = {"wrk": run_wrk, "python": run_python, "open": run_open}[args.client]
        runs = [run(host, port, c, args) for c in levels]
        report = {
            "target": f"http://{host}:{port}",
            "serve_command": " ".join(cmd) if args.launch else None,
            "rss_mib_before_load": rss_at_start,
            "rss_mib_after_load": rss_mib(args.pid) if args.pid else None,
            "runs": runs,
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
