"""Parses a /metrics dump with the official Prometheus client parser.

Usage: check_metrics.py FILE. Fails (exit 1) if the text does not parse, or
if a histogram lacks its +Inf bucket or has _count != the +Inf bucket.
"""
import sys

from prometheus_client.parser import text_string_to_metric_families


def main(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    families = list(text_string_to_metric_families(text))
    names = {f.name for f in families}
    for required in ("saferoute_http_requests", "saferoute_stage_latency_seconds",
                     "saferoute_queue_depth", "saferoute_batch_size"):
        if required not in names:
            raise SystemExit(f"{path}: family {required} missing; have {sorted(names)}")
    for family in families:
        if family.type != "histogram":
            continue
        series = {}
        for s in family.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            entry = series.setdefault(key, {"inf": None, "count": None, "last": -1})
            if s.name.endswith("_bucket"):
                if s.value < entry["last"]:
                    raise SystemExit(f"{family.name}{dict(key)}: buckets not cumulative")
                entry["last"] = s.value
                if s.labels["le"] == "+Inf":
                    entry["inf"] = s.value
            elif s.name.endswith("_count"):
                entry["count"] = s.value
        for key, entry in series.items():
            if entry["inf"] is None or entry["inf"] != entry["count"]:
                raise SystemExit(f"{family.name}{dict(key)}: +Inf bucket {entry['inf']} "
                                 f"!= _count {entry['count']}")
    print(f"{path}: {len(families)} metric families parsed")


if __name__ == "__main__":
    main(sys.argv[1])
