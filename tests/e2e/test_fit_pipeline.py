#!/usr/bin/env python3
"""End to end: `saferoute fit` on stand-in guards with the real vocabulary.

score -> label -> train -> calibrate -> eval on a slice of ../shared/bench,
then the same command again must reuse every score (resumability), and the
report must have the stable JSON shape outside checks rely on.
Usage: test_fit_pipeline.py --saferoute BIN --shared-dir DIR
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile


def run_fit(binary, shared, out):
    cmd = [binary, "fit", "--shared", shared, "--out", out, "--train-limit", "240",
           "--eval-limit", "120", "--epochs", "30", "--share", "0.2", "--small-precision", "fp32",
           "--large-precision", "fp32", "--threads", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"fit failed with exit code {proc.returncode}")
    return proc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--saferoute", required=True)
    ap.add_argument("--shared-dir", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "fit")
        first = run_fit(args.saferoute, args.shared_dir, out)
        assert "RANDOM-WEIGHT STAND-IN" in first.stderr, "fit must say plainly that the stand-ins are random"
        report = json.load(open(os.path.join(out, "eval.json")))
        assert report["n"] == 120, report["n"]
        methods = report["methods"]
        for key in ("small", "large", "oracle", "random", "entropy", "saferoute"):
            assert key in methods, f"method {key} missing from eval.json: {sorted(methods)}"
            for field in ("f1", "precision", "recall", "large_share"):
                value = methods[key][field]
                assert isinstance(value, (int, float)) and math.isfinite(value), (key, field, value)
                assert 0.0 <= value <= 1.0, (key, field, value)
        assert methods["small"]["large_share"] == 0.0
        assert methods["large"]["large_share"] == 1.0
        # The oracle uses the large verdict exactly where it helps: never worse than either guard.
        assert methods["oracle"]["f1"] >= max(methods["small"]["f1"], methods["large"]["f1"]) - 1e-12
        assert "saferoute" in report["curves"], sorted(report["curves"])
        svg = open(os.path.join(out, "eval.svg")).read()
        assert svg.lstrip().startswith("<") and "</svg>" in svg
        router = os.path.join(out, "router.safetensors")
        assert os.path.getsize(router) > 0
        labels = [json.loads(l) for l in open(os.path.join(out, "labels-train.jsonl"))]
        assert len(labels) == 240
        for l in labels:  # Eq. 1: t = large right and small wrong
            assert l["t"] == (l["large_pred"] == l["gold"] and l["small_pred"] != l["gold"]), l

        # Second run: every score reused, same report.
        second = run_fit(args.saferoute, args.shared_dir, out)
        assert second.stderr.count("reused from an earlier run") == 4, second.stderr
        assert json.load(open(os.path.join(out, "eval.json")))["methods"]["large"] == methods["large"]
    print("fit pipeline: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
