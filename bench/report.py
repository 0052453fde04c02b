#!/usr/bin/python3
"""Summarise one contender's pgbench runs: tps from pgbench's own report,
latency percentiles from its per-transaction logs (-l).

    report.py CONTENDER LOG_PREFIX PGBENCH_OUTPUT... >> results.jsonl

A pgbench log line is: client, transaction number, latency in microseconds,
script number, epoch seconds, microseconds.
"""
import glob
import json
import re
import sys


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * (len(sorted_values) - 1)))))
    return sorted_values[k]


def main():
    name, prefix, outputs = sys.argv[1], sys.argv[2], sys.argv[3:]
    values = []
    for path in glob.glob(prefix + "*"):
        with open(path) as log:
            values.extend(int(line.split()[2]) for line in log)
    values.sort()
    tps = []
    for path in outputs:
        match = re.search(r"^tps = ([0-9.]+)", open(path).read(), re.M)
        if match:
            tps.append(float(match.group(1)))
    tps.sort()
    print(json.dumps({
        "contender": name,
        "runs": len(tps),
        "tps": tps[len(tps) // 2] if tps else 0.0,      # the median round
        "tps_rounds": tps,
        "transactions": len(values),
        "p50_ms": percentile(values, 50) / 1000.0,
        "p99_ms": percentile(values, 99) / 1000.0,
    }))


if __name__ == "__main__":
    main()
