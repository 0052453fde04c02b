#!/usr/bin/python3
"""Print the README's performance tables from bench/results.jsonl (written by
bench/run.sh), so the README shows exactly what the last run measured.

    bench/readme_table.py [bench/results.jsonl]
"""
import json
import os
import sys

path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results.jsonl")
runs = [json.loads(line) for line in open(path)]
for r in runs:
    r["contenders"] = {c["contender"]: c["tps"] for c in r["contenders"]}


def find(mode, workload, clients):
    return next((r["contenders"] for r in runs
                 if r["mode"] == mode and r["workload"] == workload and r["clients"] == clients), None)


HANDWRITTEN = {"conditional_update": "conditional update", "read_then_write": "read then write",
               "for_update": "for update"}
clients_all = sorted({r["clients"] for r in runs})

print("| workload | clients | `charge_credit` ÷ bare `UPDATE` | best hand-written ÷ bare `UPDATE` |"
      " `reserve` + `commit` ÷ bare `UPDATE` | `is_team_limited` ÷ PK `SELECT` |")
print("|---|---|---|---|---|---|")
for mode in ["durable", "cpu-bound"]:
    for workload in ["SPREAD", "HOT"]:
        for clients in clients_all:
            c = find(mode, workload, clients)
            if c is None:
                continue
            bare = c["bare_update"]
            best = max(HANDWRITTEN, key=lambda k: c[k])
            print("| %s, %s | %d | %.2f× | %.2f× (%s) | %.2f× | %.2f× |" % (
                workload, mode, clients, c["charge_credit"] / bare, c[best] / bare, HANDWRITTEN[best],
                c["reserve_commit"] / bare, c["is_team_limited"] / c["pk_select"]))
print()
print("| mode | clients | call | SPREAD | HOT, one row | HOT, 32 slots | HOT with slots ÷ SPREAD |")
print("|---|---|---|---|---|---|---|")
for mode in ["durable", "cpu-bound"]:
    for clients in clients_all:
        cells = [find(mode, w, clients) for w in ["SPREAD", "HOT", "HOT-SLOTS"]]
        if None in cells:
            continue
        for call, name in [("charge_credit", "`charge_credit`"), ("reserve_commit", "`reserve` + `commit`")]:
            spread, hot, slotted = (cell[call] for cell in cells)
            print("| %s | %d | %s | %.0f tps | %.0f tps | %.0f tps | **%.2f×** |" % (
                mode, clients, name, spread, hot, slotted, slotted / spread))
