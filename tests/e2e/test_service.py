"""End-to-end tests of `saferoute serve` with a stand-in remote large guard.

Starts the real binary (path from CTest: --saferoute) with the fixture model
llama_guard_tiny_fullvocab_bf16 as the small guard, a generated router that
escalates every input (so every request exercises the remote path), and
standin_remote.py as the vLLM / llama.cpp large guard. Drives it with the
official OpenAI Python client and raw HTTP; parses /metrics with
prometheus_client. Everything binds 127.0.0.1 on free ports, every wait is
bounded, and every process and thread is stopped in finally/tearDown.

Exit code 77 (CTest SKIP_RETURN_CODE) when the Python packages are missing.
"""
import argparse
import concurrent.futures
import http.client
import json
import math
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

try:
    import openai
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:  # pragma: no cover
    print(f"e2e: skipped, missing Python package ({e}); run scripts/install-deps.sh")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from standin_remote import StandInRemote  # noqa: E402
from tls_cert import make_self_signed_cert  # noqa: E402

ARGS = None  # filled in main()
FEATURE_DIM = 64  # hidden size of the tiny fixture model


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_router(path, fingerprint, feature_dim=FEATURE_DIM, final_bias=10.0):
    """A router file (format version 1, see src/router/testdata/make_router_v1.py)
    whose output is sigmoid(final_bias) for every input: the last layer's weights
    are zero. With the default bias every input scores ~0.99995 and escalates."""
    hidden = 4
    params = {}
    for i, (fan_in, fan_out) in enumerate([(feature_dim, hidden), (hidden, hidden), (hidden, 1)]):
        weight = [0.01 * ((k % 7) - 3) for k in range(fan_in * fan_out)] if i < 2 else [0.0] * fan_in
        params[f"fc{i}.weight"] = ([fan_out, fan_in], weight)
        params[f"fc{i}.bias"] = ([fan_out], [final_bias] if i == 2 else [0.0] * fan_out)
        params[f"fc{i}.weight_log_sigma"] = ([fan_out, fan_in], [math.log(0.1)] * (fan_in * fan_out))
        params[f"fc{i}.bias_log_sigma"] = ([fan_out], [math.log(0.05)] * fan_out)
        if i < 2:
            params[f"ln{i}.weight"] = ([fan_out], [1.0] * fan_out)
            params[f"ln{i}.bias"] = ([fan_out], [0.0] * fan_out)
    config = {"type": "bnn", "feature_dim": feature_dim, "hidden_dim": hidden, "prior_sigma": 0.1,
              "fingerprint": fingerprint, "threshold": 0.5,
              "calibration": [[0.2, 0.6, -1], [0.5, 0.3, -1], [0.9, 0.1, -1]],
              "calibration_source": {"examples": 10},
              "training": {"examples": 100, "positives": 10, "seed": 1}}
    header, blobs, offset = {}, [], 0
    for name, (shape, values) in params.items():
        blob = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {"format": "saferoute-router", "version": "1", "config": json.dumps(config)}
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def http_json(url, body=None, timeout=30, headers=None, context=None):
    """(status, parsed JSON or text) of a GET (body None) or POST; `context`:
    an ssl.SSLContext for https URLs."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


class Service:
    """One `saferoute serve` process. Always stop() it (SIGTERM, then SIGKILL)."""

    def __init__(self, flags, workdir, env=None, tls_context=None):
        self.port = free_port()
        self.tls_context = tls_context  # ssl.SSLContext trusting the service's certificate
        scheme = "https" if tls_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log_path = os.path.join(workdir, f"serve-{self.port}.log")
        self.cmd = [ARGS.saferoute, "serve", "--listen-host", "127.0.0.1",
                    "--listen-port", str(self.port), *flags]
        self.env = None if env is None else {**os.environ, **env}
        self.proc = None

    def start(self, ready_timeout=90):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False  # exited: the caller reads log_text()
            try:
                status, _ = http_json(self.url + "/healthz", timeout=2, context=self.tls_context)
                if status == 200:
                    return True
            except (urllib.error.URLError, ConnectionError, socket.timeout, ssl.SSLError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"service not healthy within {ready_timeout} s:\n{self.log_text()}")

    def log_text(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        return self.proc.returncode

    def moderate(self, inputs, timeout=30, headers=None):
        return http_json(self.url + "/v1/moderations", {"input": inputs}, timeout=timeout,
                         headers=headers, context=self.tls_context)

    def get(self, path, headers=None):
        return http_json(self.url + path, headers=headers, context=self.tls_context)

    def metrics(self, headers=None):
        req = urllib.request.Request(self.url + "/metrics", headers=headers or {})
        with urllib.request.urlopen(req, timeout=10, context=self.tls_context) as resp:
            text = resp.read().decode()
        # Raises on any format error: this is the prometheus_client parser check.
        families = {f.name: f for f in text_string_to_metric_families(text)}
        return families, text


def sample_value(families, family, name, labels):
    for s in families[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError(f"{name}{labels} not in /metrics")


class ServiceTestBase(unittest.TestCase):
    """Shared set-up: a temp dir, a router fitted to the small guard, helpers."""

    fingerprint = None  # learnt once per run

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="saferoute-e2e-")
        cls.router_path = os.path.join(cls.tmp.name, "router_e2e.safetensors")
        if ServiceTestBase.fingerprint is None:
            ServiceTestBase.fingerprint = cls._learn_fingerprint()
        write_router(cls.router_path, ServiceTestBase.fingerprint)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def _learn_fingerprint(cls):
        """The router must carry the small guard's feature fingerprint. The test
        learns it from the service's own refusal of a router with a wrong one
        (which also checks that refusal: non-zero exit, message naming both)."""
        write_router(cls.router_path, "e2e-wrong-fingerprint")
        service = Service(cls.base_flags(cls.router_path), cls.tmp.name)
        try:
            started = service.start()
            if started:
                raise AssertionError("service accepted a router with a wrong fingerprint")
            log = service.log_text()
        finally:
            service.stop()
        match = re.search(r"got features from '([^']*)'", log)
        if not match:
            raise AssertionError(f"service refused the router without naming the fingerprint:\n{log}")
        return match.group(1)

    @classmethod
    def base_flags(cls, router_path):
        shared = ARGS.shared_dir
        model = os.path.join(shared, "fixtures/guard/llama_guard_tiny_fullvocab_bf16")
        return ["--small-model-dir", model, "--small-format", "llama-guard-3-1b",
                "--small-precision", "fp32", "--small-threads", "1",
                "--router-path", router_path, "--large-format", "llama-guard-3-8b",
                "--remote-tokenizer", os.path.join(model, "tokenizer.json")]

    def start_service(self, remote, policy="fail_closed", breaker_failures=3, extra_flags=(),
                      env=None, tls_context=None):
        flags = self.base_flags(self.router_path) + [
            "--large-mode", "remote", "--remote-kind", remote.kind, "--remote-url", remote.url,
            "--remote-model", remote.model, "--remote-timeout-ms", "300", "--remote-retries", "1",
            "--remote-backoff-ms", "10", "--remote-breaker-failures", str(breaker_failures),
            "--remote-breaker-open-ms", "1500", "--policy-failure", policy, *extra_flags]
        service = Service(flags, self.tmp.name, env=env, tls_context=tls_context)
        self.addCleanup(service.stop)
        if not service.start():
            self.fail(f"service exited at start:\n{service.log_text()}")
        return service

    def start_remote(self, kind="vllm", **kw):
        remote = StandInRemote(kind=kind, **kw).start()
        self.addCleanup(remote.stop)
        return remote

    def assert_remote_requests_ok(self, remote):
        self.assertEqual(remote.bad_requests, [], "requests to the remote broke the documented shape")


class HappyPathTest(ServiceTestBase):
    def check_kind(self, kind):
        remote = self.start_remote(kind, p_unsafe=0.9, decode_text="unsafe\nS1,S10")
        service = self.start_service(remote)
        client = openai.OpenAI(base_url=service.url + "/v1", api_key="unused", timeout=30,
                               max_retries=0)
        # One input: a typed ModerationCreateResponse.
        before = remote.count()
        resp = client.moderations.create(model="saferoute-lg3", input="How do I pick a lock?")
        self.assertIsInstance(resp, openai.types.ModerationCreateResponse)
        self.assertEqual(len(resp.results), 1)
        result = resp.results[0]
        self.assertIs(result.flagged, True)
        self.assertIs(result.categories.violence, True)  # S1 -> violence
        self.assertIs(result.categories.hate, True)      # S10 -> hate
        self.assertIs(result.categories.sexual, False)
        self.assertAlmostEqual(result.category_scores.violence, 0.9, places=4)
        self.assertEqual(remote.count(), before + 1)
        # An array: one result per input, in order.
        texts = ["first input", "second input", "a third, longer input " * 5]
        resp = client.moderations.create(model="saferoute-lg3", input=texts)
        self.assertEqual(len(resp.results), 3)
        self.assertEqual(remote.count(), before + 4)
        # The provenance extension says the large guard decided.
        status, body = service.moderate(["provenance check"])
        self.assertEqual(status, 200, body)
        ext = body["results"][0]["saferoute"]
        self.assertEqual(ext["decided_by"], "large")
        self.assertTrue(ext["escalated"])
        self.assertAlmostEqual(ext["p_unsafe_large"], 0.9, places=4)
        self.assertEqual(sorted(ext["s_codes"]), ["S1", "S10"])
        self.assertFalse(ext["degraded"])
        self.assert_remote_requests_ok(remote)
        status, _ = http_json(service.url + "/readyz")
        self.assertEqual(status, 200)

    def test_vllm(self):
        self.check_kind("vllm")

    def test_llamacpp(self):
        self.check_kind("llamacpp")

    def test_safe_verdict_from_remote(self):
        remote = self.start_remote("vllm", p_unsafe=0.02, decode_text="safe")
        service = self.start_service(remote)
        status, body = service.moderate("hello there")
        self.assertEqual(status, 200, body)
        result = body["results"][0]
        self.assertFalse(result["flagged"])
        self.assertAlmostEqual(result["saferoute"]["p_unsafe_large"], 0.02, places=4)


class FaultTest(ServiceTestBase):
    def test_no_request_lost_or_hung_under_concurrent_faults(self):
        remote = self.start_remote("vllm", p_unsafe=0.05, decode_text="safe")
        service = self.start_service(remote, "fail_closed",
                                     breaker_failures=1000)
        remote.set_mode("garbage")
        n = 24
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(service.moderate, [f"input {i}", f"second {i}"], 30)
                       for i in range(n)]
            answers = [f.result(timeout=60) for f in futures]
        self.assertEqual(len(answers), n)
        for status, body in answers:
            self.assertEqual(status, 200, body)
            self.assertEqual(len(body["results"]), 2)
            for result in body["results"]:
                self.assertEqual(result["saferoute"]["policy_applied"], "fail_closed")
        families, _ = service.metrics()
        self.assertGreaterEqual(
            sample_value(families, "saferoute_remote_events", "saferoute_remote_events_total",
                         {"event": "bad_responses"}), 2 * n)

    def test_circuit_opens_fails_fast_and_recovers(self):
        remote = self.start_remote("vllm", p_unsafe=0.9)
        service = self.start_service(remote, "fail_closed")
        families, _ = service.metrics()
        state = lambda fams, s: sample_value(fams, "saferoute_remote_circuit_state",
                                             "saferoute_remote_circuit_state", {"state": s})
        self.assertEqual(state(families, "closed"), 1)
        remote.set_mode("error500")
        # breaker_failures = 3 attempts; each input makes up to 2 attempts.
        for i in range(3):
            status, _ = service.moderate(f"open it {i}")
            self.assertEqual(status, 200)
        families, _ = service.metrics()
        self.assertEqual(state(families, "open"), 1)
        # While open: answered by the policy at once, the remote sees nothing.
        seen = remote.count()
        t0 = time.monotonic()
        status, body = service.moderate("while open")
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(status, 200)
        self.assertEqual(body["results"][0]["saferoute"]["policy_applied"], "fail_closed")
        self.assertEqual(remote.count(), seen)
        families, _ = service.metrics()
        self.assertGreaterEqual(sample_value(families, "saferoute_remote_events",
                                             "saferoute_remote_events_total",
                                             {"event": "short_circuited"}), 1)
        # The remote heals; after open_ms (1.5 s) a probe closes the circuit.
        remote.set_mode("ok")
        time.sleep(1.7)
        status, body = service.moderate("after recovery")
        self.assertEqual(status, 200)
        self.assertEqual(body["results"][0]["saferoute"]["decided_by"], "large")
        families, _ = service.metrics()
        self.assertEqual(state(families, "closed"), 1)


class SecurityTest(ServiceTestBase):
    """HTTPS with a self-signed certificate made here, API keys from the
    environment, the official client, and what responses must not reveal."""

    KEY = "sk-e2e-0123456789abcdefghij"

    def start_secure_service(self, remote, extra_flags=()):
        cert, key = make_self_signed_cert(self.tmp.name)
        context = ssl.create_default_context(cafile=cert)
        service = self.start_service(
            remote, extra_flags=["--listen-tls-cert-file", cert, "--listen-tls-key-file", key,
                                 "--auth-api-keys-env", "SAFEROUTE_E2E_KEYS", *extra_flags],
            env={"SAFEROUTE_E2E_KEYS": f"sk-e2e-other-key-000000000,{self.KEY}"},
            tls_context=context)
        return service, cert

    def test_openai_client_with_api_key_over_tls(self):
        remote = self.start_remote("vllm", p_unsafe=0.9, decode_text="unsafe\nS1")
        service, cert = self.start_secure_service(remote)
        self.assertTrue(service.url.startswith("https://"))

        def client(api_key):
            return openai.OpenAI(base_url=service.url + "/v1", api_key=api_key, timeout=30,
                                 max_retries=0,
                                 http_client=openai.DefaultHttpxClient(
                                     verify=ssl.create_default_context(cafile=cert)))

        resp = client(self.KEY).moderations.create(model="saferoute-lg3", input="over TLS")
        self.assertIs(resp.results[0].flagged, True)
        self.assertIs(resp.results[0].categories.violence, True)
        with self.assertRaises(openai.AuthenticationError) as wrong:
            client("sk-e2e-wrong-key-000000000").moderations.create(input="x")
        self.assertEqual(wrong.exception.status_code, 401)
        self.assertEqual(wrong.exception.body["code"], "invalid_api_key")
        # No Authorization header at all (the official client always sends one).
        status, body = service.moderate("no key")
        self.assertEqual(status, 401, body)
        self.assertEqual(body["error"]["code"], "missing_api_key")
        self.assertEqual(set(body["error"]), {"message", "type", "param", "code"})
        # Health stays open; metrics need the key (auth.metrics defaults to true).
        self.assertEqual(service.get("/healthz")[0], 200)
        self.assertEqual(service.get("/readyz")[0], 200)
        self.assertEqual(service.get("/metrics")[0], 401)
        families, _ = service.metrics(headers={"Authorization": "Bearer " + self.KEY})
        self.assertIn("saferoute_http_requests", families)
        self.assertEqual(sample_value(families, "saferoute_http_requests",
                                      "saferoute_http_requests_total",
                                      {"route": "/v1/moderations", "status": "401"}), 2)
        # Plain HTTP on the TLS port gets no HTTP answer.
        with self.assertRaises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            http_json(f"http://127.0.0.1:{service.port}/healthz", timeout=5)
        # A client that does not trust the certificate refuses it.
        with self.assertRaises(openai.APIConnectionError):
            openai.OpenAI(base_url=service.url + "/v1", api_key=self.KEY, timeout=10,
                          max_retries=0).moderations.create(input="x")
        self.assertNotIn(self.KEY, service.log_text())

    def test_keys_never_come_from_the_command_line(self):
        flags = self.base_flags(self.router_path) + ["--auth-api-keys", self.KEY]
        service = Service(flags, self.tmp.name)
        self.addCleanup(service.stop)
        self.assertFalse(service.start(), "a key on the command line was accepted")
        self.assertIn("--auth-api-keys", service.log_text())

    def test_responses_carry_no_paths_or_addresses(self):
        remote = self.start_remote("vllm", p_unsafe=0.9, decode_text="unsafe\nS1")
        service = self.start_service(remote)
        model_dir = os.path.join(ARGS.shared_dir, "fixtures/guard")
        status, body = http_json(service.url + "/v1/guard", {"prompt": "where do models live?"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["models"]["small"], "llama_guard_tiny_fullvocab_bf16")
        self.assertEqual(body["models"]["large"], remote.model)
        status, moderation = service.moderate("and the moderation route?")
        self.assertEqual(status, 200, moderation)
        for text in (json.dumps(body), json.dumps(moderation)):
            self.assertNotIn(os.path.abspath(model_dir), text)
            self.assertNotIn(ARGS.shared_dir, text)
            self.assertNotIn(remote.url, text)
            self.assertNotIn(f"127.0.0.1:{remote.port}", text)
        # A remote failure's message in large_error names no address either.
        remote.set_mode("error500")
        status, failed = service.moderate("remote down")
        self.assertEqual(status, 200, failed)
        ext = failed["results"][0]["saferoute"]
        self.assertEqual(ext["policy_applied"], "fail_closed")
        self.assertNotIn(f"127.0.0.1:{remote.port}", json.dumps(failed))


class FaultMatrixTest(ServiceTestBase):
    """Every remote fault ends in the configured failure policy, within the
    remote's own bounds (attempt timeout x attempts + backoff), with every
    input answered, and the service recovers when the remote does.

    Faults: connection refused (port closed), hang (reads the request, never
    answers), slow trickle (the answer, status line included, one byte per
    50 ms: a per-read timeout never fires), garbage (invalid JSON), HTTP 500."""

    FAULTS = ("refused", "hang", "trickle", "garbage", "error500")
    DEADLINE = {"X-SafeRoute-Deadline-Ms": "20000"}  # far beyond the remote's bounds

    def set_fault(self, remote, fault):
        if fault == "refused":
            remote.stop()
        else:
            remote.set_mode(fault)

    def clear_fault(self, remote, fault):
        if fault == "refused":
            remote.start()
        remote.set_mode("ok")

    def expected_flag(self, policy, p_small):
        return {"fail_closed": True, "fail_open": False}.get(policy, p_small > 0.5)

    def check_answers_under_fault(self, service, policy, fault):
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(
                lambda i: service.moderate([f"{fault} {i}", f"{fault} again {i}"],
                                           timeout=60, headers=self.DEADLINE),
                range(6)))
        elapsed = time.monotonic() - t0
        for status, body in answers:
            self.assertEqual(status, 200, body)
            self.assertEqual(len(body["results"]), 2)
            for result in body["results"]:
                ext = result["saferoute"]
                self.assertEqual(ext["decided_by"], "policy", ext)
                self.assertEqual(ext["policy_applied"], policy, ext)
                self.assertIsNone(ext["p_unsafe_large"], ext)
                self.assertEqual(result["flagged"],
                                 self.expected_flag(policy, ext["p_unsafe_small"]), ext)
        # 12 inputs, 8 remote calls at a time, each <= 2 x 300 ms + backoff: a
        # fault that outlives the remote's timeout shows as ~2 x 5 s here.
        self.assertLess(elapsed, 6.0, f"{fault}: answers took {elapsed:.1f} s")
        if fault == "refused":
            # Readiness follows the policy: fail_closed blocks every
            # escalation without the large guard; the others answer.
            self.assertEqual(service.get("/readyz")[0], 503 if policy == "fail_closed" else 200)

    def run_matrix(self, policy, faults=FAULTS):
        remote = self.start_remote("vllm", p_unsafe=0.9, decode_text="unsafe\nS1")
        remote.trickle_interval_s = 0.05
        # 300 ms per attempt, 2 attempts, 10 ms backoff (start_service).
        service = self.start_service(remote, policy, breaker_failures=1000)
        # The remote worked before it failed (the large guard's time estimate
        # exists, so its inputs are batched; before the first answer they run
        # one at a time).
        status, body = service.moderate("warm-up", headers=self.DEADLINE)
        self.assertEqual(body["results"][0]["saferoute"]["decided_by"], "large", body)
        for fault in faults:
            with self.subTest(policy=policy, fault=fault):
                self.set_fault(remote, fault)
                try:
                    self.check_answers_under_fault(service, policy, fault)
                finally:
                    # Cleared even when a check failed: the next fault's
                    # subtest starts from a working remote.
                    self.clear_fault(remote, fault)
                self.assertEqual(service.get("/readyz")[0], 200)
                # Nothing is left stuck: the next input reaches the large guard.
                status, body = service.moderate(f"after {fault}", headers=self.DEADLINE)
                self.assertEqual(status, 200, body)
                self.assertEqual(body["results"][0]["saferoute"]["decided_by"], "large",
                                 body["results"][0]["saferoute"])
        self.assert_remote_requests_ok(remote)
        return service

    def start_tls_remote(self, api_key):
        cert, key = make_self_signed_cert(self.tmp.name, "remote")
        remote = StandInRemote("vllm", p_unsafe=0.9, decode_text="unsafe\nS1", tls=(cert, key),
                               api_key=api_key).start()
        self.addCleanup(remote.stop)
        return remote, cert

    def test_remote_over_https_with_an_api_key(self):
        remote, cert = self.start_tls_remote("remote-e2e-key-123")
        service = self.start_service(
            remote, extra_flags=["--remote-ca-file", cert, "--remote-api-key-env", "E2E_REMOTE_KEY"],
            env={"E2E_REMOTE_KEY": "remote-e2e-key-123"})
        status, body = service.moderate("over https")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["results"][0]["saferoute"]["decided_by"], "large")
        self.assertEqual(remote.unauthorized, 0)
        self.assertEqual(service.get("/readyz")[0], 200)
        self.assertNotIn("remote-e2e-key-123", service.log_text())
        # A named variable that is unset or empty fails the start, naming the key.
        for env in ({}, {"E2E_REMOTE_KEY": ""}):
            flags = self.base_flags(self.router_path) + [
                "--large-mode", "remote", "--remote-url", remote.url, "--remote-model",
                remote.model, "--remote-ca-file", cert, "--remote-api-key-env", "E2E_REMOTE_KEY"]
            unset = Service(flags, self.tmp.name, env={**env})
            if not env:
                unset.env = {k: v for k, v in os.environ.items() if k != "E2E_REMOTE_KEY"}
            self.addCleanup(unset.stop)
            self.assertFalse(unset.start(), "started without the remote's key")
            self.assertIn("remote.api_key_env", unset.log_text())
            self.assertIn("E2E_REMOTE_KEY", unset.log_text())

    def test_tls_and_key_failures_follow_the_policy(self):
        remote, cert = self.start_tls_remote("remote-e2e-key-123")
        other_cert, _ = make_self_signed_cert(self.tmp.name, "other")
        cases = [
            # (flags, env, what large_error says): the certificate is not trusted,
            # the key is wrong, plain HTTP to a TLS port.
            (["--remote-ca-file", other_cert, "--remote-api-key-env", "K"],
             {"K": "remote-e2e-key-123"}, "verif"),
            (["--remote-ca-file", cert, "--remote-api-key-env", "K"], {"K": "wrong-key-0000"},
             "refused"),
        ]
        for flags, env, says in cases:
            with self.subTest(says=says):
                service = self.start_service(remote, "fail_closed", extra_flags=flags, env=env)
                t0 = time.monotonic()
                status, body = service.moderate("tls fault", headers=self.DEADLINE)
                self.assertLess(time.monotonic() - t0, 3.0)
                self.assertEqual(status, 200, body)
                ext = body["results"][0]["saferoute"]
                self.assertEqual(ext["policy_applied"], "fail_closed", ext)
                self.assertTrue(body["results"][0]["flagged"])
                self.assertIn(says, ext["large_error"].lower(), ext)
                self.assertNotIn("127.0.0.1", ext["large_error"], ext)
                service.stop()
        # The service speaks plain HTTP to a TLS port: a connection error, retried.
        plain_url = remote.url.replace("https://", "http://")
        flags = self.base_flags(self.router_path) + [
            "--large-mode", "remote", "--remote-url", plain_url, "--remote-model", remote.model,
            "--remote-timeout-ms", "300", "--remote-retries", "1", "--remote-backoff-ms", "10",
            "--policy-failure", "fail_open"]
        service = Service(flags, self.tmp.name)
        self.addCleanup(service.stop)
        self.assertTrue(service.start(), service.log_text())
        status, body = service.moderate("plain to tls", headers=self.DEADLINE)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["results"][0]["saferoute"]["policy_applied"], "fail_open")
        self.assertFalse(body["results"][0]["flagged"])

    def test_fail_closed(self):
        self.run_matrix("fail_closed")

    # The policy does not depend on the kind of fault (the cascade sees an
    # error or a timeout): two faults, one of each, for the other policies.
    def test_fail_open(self):
        self.run_matrix("fail_open", faults=("refused", "hang", "error500"))

    def test_degrade(self):
        self.run_matrix("degrade", faults=("refused", "trickle", "garbage"))


class InputErrorTest(ServiceTestBase):
    def test_token_limit_is_out_of_range_naming_the_input(self):
        remote = self.start_remote("vllm")
        service = self.start_service(remote, extra_flags=["--limits-tokens-per-input", "300"])
        internal = ("small guard", "request 0", "max_input_tokens", "input 1", "tokens_per_input")
        status, body = service.moderate(["short", "word " * 400])
        self.assertEqual(status, 400, body)
        error = body["error"]
        self.assertEqual(error["code"], "out_of_range", error)
        self.assertEqual(error["param"], "input[1]", error)
        self.assertEqual(error["type"], "invalid_request_error", error)
        self.assertTrue(error["message"].startswith("input[1]: "), error)
        self.assertIn("limit of 300", error["message"])
        for name in internal:
            self.assertNotIn(name, error["message"])
        status, body = http_json(service.url + "/v1/guard", {"prompt": "word " * 400})
        self.assertEqual(status, 400, body)
        self.assertEqual(body["error"]["code"], "out_of_range", body)
        self.assertEqual(body["error"]["param"], "prompt", body)
        self.assertTrue(body["error"]["message"].startswith("prompt: "), body)
        for name in internal + ("input[0]",):
            self.assertNotIn(name, body["error"]["message"])
        self.assertEqual(service.moderate(["short", "also short"])[0], 200)


def routed_by(answers, new):
    """The 200 answers whose inputs were all routed by the old router (scores
    ~1, threshold 0.5) or all by the new one (scores ~0, threshold 0.3)."""
    def by(result):
        ext = result["saferoute"]
        if new:
            return ext["router_score"] < 0.01 and abs(ext["router_threshold"] - 0.3) < 1e-9
        return ext["router_score"] > 0.99 and abs(ext["router_threshold"] - 0.5) < 1e-9
    return [b for st, b in list(answers) if st == 200 and all(by(r) for r in b["results"])]


class ReloadTest(ServiceTestBase):
    """SIGHUP reloads the router file and the router.* keys of the config file
    while requests flow: none fails, a bad new file keeps the old router (and
    the log says why), a good one takes over."""

    def wait_for_log(self, service, text, after, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = service.log_text()
            if log.count(text) > after:
                return log
            time.sleep(0.05)
        self.fail(f"no '{text}' in the log:\n{service.log_text()}")

    def test_sighup_reload_under_load(self):
        remote = self.start_remote("vllm", p_unsafe=0.9)
        router = os.path.join(self.tmp.name, "reload_router.safetensors")
        write_router(router, ServiceTestBase.fingerprint, final_bias=10.0)  # scores ~1: escalate
        config = os.path.join(self.tmp.name, "reload.toml")

        def write_config(threshold, turns=64):
            with open(config, "w") as f:
                f.write(f'[router]\npath = "{router}"\nthreshold = {threshold}\n'
                        f"[limits]\nturns = {turns}\n")

        write_config(0.5)
        flags = [f for f in self.base_flags(self.router_path)]
        i = flags.index("--router-path")
        del flags[i:i + 2]  # the file says where the router is
        flags += ["--config", config, "--large-mode", "remote", "--remote-url", remote.url,
                  "--remote-model", remote.model, "--remote-timeout-ms", "1000"]
        service = Service(flags, self.tmp.name)
        self.addCleanup(service.stop)
        self.assertTrue(service.start(), service.log_text())

        statuses, lock, stop = [], threading.Lock(), threading.Event()

        def load():
            while not stop.is_set():
                status, body = service.moderate(["reload a", "reload b"], timeout=30)
                with lock:
                    statuses.append((status, body))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            # A broken router file: refused, the old router stays.
            with open(router, "wb") as f:
                f.write(b"this is not a router file")
            service.proc.send_signal(signal.SIGHUP)
            log = self.wait_for_log(service, "SIGHUP reload failed", 0)
            self.assertIn(router, log.split("SIGHUP reload failed")[-1].splitlines()[0])
            status, body = service.moderate("after the bad reload")
            self.assertEqual(status, 200, body)
            ext = body["results"][0]["saferoute"]
            self.assertTrue(ext["escalated"], ext)
            self.assertGreater(ext["router_score"], 0.99)
            # A good new router (scores ~0) and a new threshold; a key that needs a
            # restart is reported, not applied.
            write_router(router, ServiceTestBase.fingerprint, final_bias=-10.0)
            write_config(0.3, turns=8)
            service.proc.send_signal(signal.SIGHUP)
            log = self.wait_for_log(service, "reloaded routing", 0)
            self.assertIn("limits.turns changed", log)
            status, body = service.moderate("after the good reload")
            self.assertEqual(status, 200, body)
            ext = body["results"][0]["saferoute"]
            self.assertLess(ext["router_score"], 0.01, ext)
            self.assertAlmostEqual(ext["router_threshold"], 0.3)
            self.assertFalse(ext["escalated"], ext)
            # Let the load run on under the new routing for a few answers.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(routed_by(statuses, new=True)) < 4:
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        failures = [(st, b) for st, b in statuses if st != 200]
        self.assertEqual(failures, [], f"{len(failures)} of {len(statuses)} requests failed")
        # Requests flowed through both reloads: answers under the old router
        # and under the new one, each routed wholly by one of them.
        self.assertGreaterEqual(len(routed_by(statuses, new=False)), 2, statuses)
        self.assertGreaterEqual(len(routed_by(statuses, new=True)), 4, statuses)
        self.assertEqual(len(routed_by(statuses, new=False)) + len(routed_by(statuses, new=True)),
                         len(statuses))
        self.assertEqual(service.proc.poll(), None, "the service exited")


class MetricsTest(ServiceTestBase):
    def test_metrics_parse_and_count(self):
        remote = self.start_remote("vllm")
        service = self.start_service(remote)
        for i in range(3):
            self.assertEqual(service.moderate(f"count me {i}")[0], 200)
        families, text = service.metrics()
        self.assertIn("saferoute_remote_circuit_state", families)
        self.assertIn("saferoute_remote_events", families)
        self.assertGreaterEqual(len(families), 5, text[:2000])
        for family in families.values():
            if family.type == "histogram":
                buckets = [s for s in family.samples if s.name.endswith("_bucket")]
                self.assertTrue(any(s.labels.get("le") == "+Inf" for s in buckets), family.name)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--saferoute", required=True, help="path of the saferoute binary")
    parser.add_argument("--shared-dir", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "../../../shared"))
    ARGS, rest = parser.parse_known_args()
    if not os.access(ARGS.saferoute, os.X_OK):
        print(f"e2e: {ARGS.saferoute} is not an executable")
        sys.exit(1)
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
