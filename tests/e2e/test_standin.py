"""Self-test of the stand-in remote (no saferoute binary needed): its answers
have the documented vLLM / llama.cpp shapes (guard-models.md §6.1-6.2), its
request checks catch a bad request, and its fault modes do what they say."""
import json
import math
import os
import socket
import ssl
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from standin_remote import SAFE_ID, UNSAFE_ID, StandInRemote  # noqa: E402
from tls_cert import make_self_signed_cert  # noqa: E402

# A Llama Guard 3 8B-style prompt: leading space, BOS, ..., header end, 271.
PROMPT = [220, 128000, 128006, 882, 128007, 271, 128009, 128006, 78191, 128007, 271]


def post(url, body, timeout=10, headers=None, context=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class StandInTest(unittest.TestCase):
    def test_vllm_shape(self):
        remote = StandInRemote("vllm", p_unsafe=0.8).start()
        try:
            status, raw = post(remote.url + "/v1/completions",
                               {"model": remote.model, "prompt": PROMPT, "max_tokens": 1,
                                "temperature": 0, "logprobs": 20})
            self.assertEqual(status, 200)
            body = json.loads(raw)
            top = body["choices"][0]["logprobs"]["top_logprobs"][0]
            self.assertAlmostEqual(math.exp(top[f"token_id:{UNSAFE_ID}"]), 0.8)
            self.assertAlmostEqual(math.exp(top[f"token_id:{SAFE_ID}"]), 0.2)
            self.assertEqual(body["choices"][0]["text"], "unsafe")
            self.assertEqual(remote.bad_requests, [])
            # A request without logprobs and with a BOS-less prompt is flagged.
            post(remote.url + "/v1/completions",
                 {"model": "other", "prompt": [1, 2, 3], "max_tokens": 1, "temperature": 0})
            self.assertGreaterEqual(len(remote.bad_requests), 3)
        finally:
            remote.stop()

    def test_llamacpp_shape(self):
        remote = StandInRemote("llamacpp", p_unsafe=0.3, decode_text="safe").start()
        try:
            status, raw = post(remote.url + "/completion",
                               {"prompt": PROMPT, "n_predict": 1, "n_probs": 20,
                                "temperature": 0, "cache_prompt": False})
            self.assertEqual(status, 200)
            body = json.loads(raw)
            top = {e["id"]: e["logprob"] for e in body["completion_probabilities"][0]["top_logprobs"]}
            self.assertAlmostEqual(math.exp(top[UNSAFE_ID]), 0.3)
            self.assertEqual(body["content"], "safe")
            self.assertEqual(remote.bad_requests, [])
        finally:
            remote.stop()

    def test_fault_modes(self):
        remote = StandInRemote("vllm").start()
        try:
            req = {"model": remote.model, "prompt": PROMPT, "max_tokens": 1, "temperature": 0,
                   "logprobs": 20}
            remote.set_mode("error500")
            self.assertEqual(post(remote.url + "/v1/completions", req)[0], 500)
            remote.set_mode("garbage")
            status, raw = post(remote.url + "/v1/completions", req)
            self.assertEqual(status, 200)
            with self.assertRaises(ValueError):
                json.loads(raw)
            remote.set_mode("slow")
            remote.slow_s = 0.3
            t0 = time.monotonic()
            self.assertEqual(post(remote.url + "/v1/completions", req)[0], 200)
            self.assertGreaterEqual(time.monotonic() - t0, 0.3)
            url = remote.url
            remote.stop()
            with self.assertRaises(urllib.error.URLError):
                post(url + "/v1/completions", req, timeout=2)
            remote.start()  # same port again
            self.assertEqual(remote.url, url)
            remote.set_mode("ok")
            self.assertEqual(post(remote.url + "/v1/completions", req)[0], 200)
        finally:
            remote.stop()

    def test_hang_and_trickle(self):
        remote = StandInRemote("vllm").start()
        try:
            req = {"model": remote.model, "prompt": PROMPT, "max_tokens": 1, "temperature": 0,
                   "logprobs": 20}
            remote.set_mode("hang")
            t0 = time.monotonic()
            with self.assertRaises((socket.timeout, TimeoutError, urllib.error.URLError)):
                post(remote.url + "/v1/completions", req, timeout=0.5)
            self.assertGreaterEqual(time.monotonic() - t0, 0.5)
            self.assertEqual(remote.hanging, 1)
            remote.set_mode("trickle")
            remote.trickle_interval_s = 0.001
            t0 = time.monotonic()
            status, raw = post(remote.url + "/v1/completions", req)
            self.assertEqual(status, 200)
            self.assertIn("choices", json.loads(raw))
            # Every byte waited its interval: the answer took about len × interval.
            self.assertGreaterEqual(time.monotonic() - t0, 0.001 * len(raw))
        finally:
            remote.stop()
        self.assertEqual(remote.hanging, 0)  # stop() released the held request

    def test_tls_and_api_key(self):
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = make_self_signed_cert(tmp)
            remote = StandInRemote("vllm", tls=(cert, key), api_key="remote-key-123").start()
            try:
                self.assertTrue(remote.url.startswith("https://"))
                context = ssl.create_default_context(cafile=cert)
                req = {"model": remote.model, "prompt": PROMPT, "max_tokens": 1,
                       "temperature": 0, "logprobs": 20}
                url = remote.url + "/v1/completions"
                self.assertEqual(post(url, req, context=context)[0], 401)
                self.assertEqual(post(url, req, context=context,
                                      headers={"Authorization": "Bearer wrong"})[0], 401)
                self.assertEqual(post(url, req, context=context,
                                      headers={"Authorization": "Bearer remote-key-123"})[0], 200)
                self.assertEqual(remote.unauthorized, 2)
                with self.assertRaises(urllib.error.URLError):  # certificate not trusted
                    post(url, req, context=ssl.create_default_context())
            finally:
                remote.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
