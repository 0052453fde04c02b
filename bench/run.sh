#!/usr/bin/env bash
# The benchmark: quota against the physical minimum and the hand-written
# alternatives, with pgbench -M prepared.  For each (durability, workload,
# clients) every contender runs alone for --seconds, the contenders taking
# turns, for --rounds rounds: drift hits all alike, and each contender meets
# exactly the stated number of clients on its own rows.  The median round
# counts.  Writes bench/RESULTS.md.  Not part of the test suite.
#
#   bench/run.sh [--seconds 5] [--rounds 3] [--clients "1 8 32"] [--memory-calls 1000000] [--slots 32]
#                [--workloads "SPREAD HOT HOT-AUTO HOT-SLOTS ALERTS NEAR-LIMIT HOT-LIMIT TREE"] [--extras yes|no]
#                [--out bench/RESULTS.md]
#   bench/run.sh --citus [--seconds 10] [--clients "8 32"] [--out FILE]   (bench/citus.sh: through a Citus
#                coordinator against one node, on the same machine)
#
# Workloads: SPREAD, 10,000 accounts; HOT, one account with automatic
# slotting off (quota.auto_slots = 0: every call takes its row, as 1.1 did);
# HOT-AUTO, one account as a new user has it (never given slots by hand:
# automatic slotting); HOT-SLOTS, one account pinned at --slots slots;
# NEAR-LIMIT, 10,000 accounts with 1 credit left; HOT-LIMIT, one account
# with 1 credit left (a hot account at its limit); ALERTS, SPREAD charges
# with alert thresholds configured but never reached; TREE, 32 teams under
# one org (quota.set_parent), each call on a random team, against the same
# calls on 32 parentless accounts, in the same rounds.
#
# The workloads that run every contender (SPREAD, HOT, HOT-AUTO and
# NEAR-LIMIT) also run a reservation by hand (hand_reservation: the same
# account and hold rows written with one statement to reserve and one to
# commit), the floor for reserve + commit.
#
# --workloads and --extras no (no race, no memory runs) make a shorter run,
# e.g. the speed check of every change to the hot path:
#   bench/run.sh --workloads SPREAD --clients 8 --extras no --out /tmp/spread.md
#
# On a fresh Debian 12 machine it installs what it needs with apt, builds and
# installs the extension, and runs its own throwaway cluster.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib/cluster.sh"
origin=$(pwd)
cd "$QUOTA_ROOT/bench"

seconds=5
rounds=3
slots=32
clients_list="1 8 32"
memory_calls=1000000
workloads="SPREAD HOT HOT-AUTO HOT-SLOTS ALERTS NEAR-LIMIT HOT-LIMIT TREE"
extras=yes
out="$QUOTA_ROOT/bench/RESULTS.md"
while [ $# -gt 0 ]; do
    case $1 in
        --citus) shift; exec bash "$QUOTA_ROOT/bench/citus.sh" "$@" ;;
        --workloads) workloads=$2; shift 2 ;;
        --extras) extras=$2; shift 2 ;;
        --out) out=$(cd "$origin" && realpath -m "$2"); shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --clients) clients_list=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --memory-calls) memory_calls=$2; shift 2 ;;
        --slots) slots=$2; shift 2 ;;
        *) echo "usage: bench/run.sh [--seconds N] [--rounds N] [--clients \"1 8 32\"] [--memory-calls N] [--slots 32] [--workloads \"SPREAD ...\"] [--extras yes|no] [--out FILE]" >&2; exit 2 ;;
    esac
done

CONTENDERS=(bare_update pk_select conditional_update read_then_write for_update charge_credit reserve_commit
            hand_reservation is_team_limited)
work=$(mktemp -d /tmp/quota-bench.XXXXXX)
chmod 777 "$work"
results=$work/results.jsonl
: >"$results"

quota_setup
QUOTA_PORT=54330 quota_start_cluster -c shared_buffers=512MB -c max_wal_size=8GB -c checkpoint_timeout=1h \
    -c autovacuum_naptime=10s
export PGDATABASE=bench
createdb bench

# fixtures LIMIT USED [SLOTS [ALERTS [TREE]]]: fresh tables and accounts (SLOTS > 0: the hot accounts get that
# many slots; TREE > 0: that many teams of each kind under one org)
fixtures() {
    psql -X -q -v ON_ERROR_STOP=1 -v accounts=10000 -v limit="$1" -v used="$2" -v slots="${3:-0}" \
        -v alerts="${4:-off}" -v tree="${5:-0}" -f setup.sql >/dev/null
}

# every contender alone, taking turns for $rounds rounds; appends a JSON line to results
# (the contenders: $CONTENDERS, or those named after the fourth argument)
run() {
    local mode=$1 workload=$2 accounts=$3 clients=$4
    shift 4
    local -a list=("${CONTENDERS[@]}")
    [ $# -eq 0 ] || list=("$@")
    local CONTENDERS=("${list[@]}")
    local threads=$((clients < 2 ? 1 : 2)) round c lines=()
    local sync=$([ "$mode" = durable ] && echo on || echo off)
    local options="-c synchronous_commit=$sync ${QUOTA_BENCH_OPTIONS:-}"
    say "$mode $workload, $clients clients: ${#CONTENDERS[@]} contenders x $rounds rounds x ${seconds}s"
    rm -rf "$work/run" && mkdir -p "$work/run" && chmod 777 "$work/run"
    for round in $(seq "$rounds"); do
        for c in "${CONTENDERS[@]}"; do
            # NAME@alerts: the script NAME with quota.default_alerts set (thresholds never reached).
            local script=${c%@*} extra=
            [ "$c" = "$script" ] || extra="-c quota.default_alerts=80,100"
            (cd "$work/run" && PGOPTIONS="$options $extra" \
                pgbench -n -M prepared -c "$clients" -j "$threads" -T "$seconds" -D accounts="$accounts" \
                -l --log-prefix="$work/run/log.$c.$round" -f "$QUOTA_ROOT/bench/scripts/$script.sql" \
                >"$work/run/$c.$round.out" 2>&1) || { cat "$work/run/$c.$round.out"; exit 1; }
        done
    done
    for c in "${CONTENDERS[@]}"; do
        lines+=("$(/usr/bin/python3 report.py "$c" "$work/run/log.$c." "$work/run/$c".*.out)")
    done
    printf '{"mode": "%s", "workload": "%s", "clients": %d, "contenders": [%s]}\n' "$mode" "$workload" "$clients" \
        "$(IFS=,; echo "${lines[*]}")" >>"$results"
}

wanted() { [[ " $workloads " == *" $1 "* ]]; }
for mode in durable cpu-bound; do
    if wanted SPREAD; then
        fixtures 1000000000000000 0
        for clients in $clients_list; do run "$mode" SPREAD 10000 "$clients"; done
    fi
    if wanted HOT; then
        fixtures 1000000000000000 0
        for clients in $clients_list; do QUOTA_BENCH_OPTIONS="-c quota.auto_slots=0" run "$mode" HOT 1 "$clients"; done
    fi
    # One account that nobody gave slots: automatic slotting (issue 11).
    if wanted HOT-AUTO; then
        fixtures 1000000000000000 0
        for clients in $clients_list; do run "$mode" HOT-AUTO 1 "$clients"; done
    fi
    # The same hot account split into slots (issue 4): quota's calls only, with
    # the one-row bare UPDATE for reference.
    if wanted HOT-SLOTS; then
        fixtures 1000000000000000 0 "$slots"
        for clients in $clients_list; do run "$mode" HOT-SLOTS 1 "$clients" bare_update charge_credit reserve_commit; done
    fi
    # Near the limit: every account has 1 credit left, so almost every call is denied.
    if wanted NEAR-LIMIT; then
        fixtures 1000 999
        for clients in $clients_list; do run "$mode" NEAR-LIMIT 10000 "$clients"; done
    fi
    # Alerts configured but never reached (issue 10): the same charge on accounts without alerts, with
    # quota.default_alerts set, and on accounts with thresholds of their own (set_alerts).
    if wanted ALERTS; then
        fixtures 1000000000000000 0 0 on
        for clients in $clients_list; do
            run "$mode" ALERTS 10000 "$clients" bare_update charge_credit charge_credit@alerts charge_own_alerts
        done
    fi
    # Parent budgets (issue 12): 32 teams under one org, each call on a random team (TREE), against
    # the same calls on 32 parentless accounts, taking turns with them in the same rounds.
    if wanted TREE; then
        fixtures 1000000000000000 0 0 off 32
        for clients in $clients_list; do
            run "$mode" TREE 32 "$clients" bare_update flat_charge charge_credit flat_reserve_commit reserve_commit
        done
    fi
    # One hot account at its limit: every caller is refused.
    if wanted HOT-LIMIT; then
        fixtures 1000 999
        for clients in $clients_list; do
            run "$mode" HOT-LIMIT 1 "$clients" bare_update conditional_update read_then_write charge_credit reserve_commit
        done
    fi
done

race_rows=""
memory_rows=""
if [ "$extras" = yes ]; then
    # The race, shown: 32 clients make 100 attempts each against a limit of 1000.
    say "the race: 3200 attempts against a limit of 1000"
    fixtures 1000 0
    race() {
        PGOPTIONS="-c synchronous_commit=off" pgbench -n -M prepared -c 32 -j 2 -t 100 -D accounts=1 \
            -f "$QUOTA_ROOT/bench/scripts/$1.sql" >/dev/null 2>&1
    }
    race read_then_write
    race for_update
    race charge_credit
    race_rows=$(psql -X -At -F '|' -c "
        SELECT 'read_then_write', used, credit_limit FROM bench.rtw WHERE team = '1'
        UNION ALL SELECT 'for_update', used, credit_limit FROM bench.lock WHERE team = '1'
        UNION ALL SELECT 'charge_credit', used, credit_limit FROM quota.accounts WHERE team = 'c1'")

    # Backend memory over many calls in one session (RssAnon of the backend).
    memory() {
        local script=$1 transactions=$2 accounts=${3:-10000} pid first last
        PGOPTIONS="-c synchronous_commit=off" PGAPPNAME="quota-memory" pgbench -n -M prepared -c 1 -t "$transactions" \
            -D accounts="$accounts" -f "$QUOTA_ROOT/bench/scripts/$script.sql" >/dev/null 2>&1 &
        local bench_pid=$!
        pid=""
        while [ -z "$pid" ] && kill -0 "$bench_pid" 2>/dev/null; do
            sleep 0.5
            pid=$(psql -X -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'quota-memory' LIMIT 1")
        done
        sleep 1
        first=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        last=$first
        while kill -0 "$bench_pid" 2>/dev/null; do
            last=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo "$last")
            sleep 1
        done
        echo "$script${3:+ (slotted)}|$transactions|$first|$last"
        say "memory: $script${3:+ (slotted)}, $transactions transactions: RssAnon $first kB after warm-up, $last kB at the end" >&2
    }
    fixtures 1000000000000000 0
    say "backend memory: $memory_calls calls of charge_credit, then of reserve_credit + commit_credit"
    memory_rows="$(memory charge_credit "$memory_calls")"$'\n'"$(memory reserve_commit $((memory_calls / 2)))"
    fixtures 1000000000000000 0 "$slots"
    say "backend memory: $memory_calls calls of charge_credit on one account with $slots slots"
    memory_rows+=$'\n'"$(memory charge_credit "$memory_calls" 1)"
fi

/usr/bin/python3 - "$results" "$seconds" "$rounds" "$clients_list" "$race_rows" "$memory_rows" "$slots" "$workloads" "$extras" \
    >"$out" <<'PY'
import json, platform, subprocess, sys, datetime
results_path, seconds, rounds, clients_list, race_rows, memory_rows, slots, workloads, extras = sys.argv[1:10]
import atexit, io, re
real_stdout, sys.stdout = sys.stdout, io.StringIO()


@atexit.register
def without_empty_sections():
    """A section whose table got no rows (its workload did not run) is left out, up to that table."""
    empty = re.compile(r"\A## [^|]*?^\|[^\n]*\|\n\|(?:---\|)+\n(?!\|)\n*", re.M | re.S)
    real_stdout.write("".join(empty.sub("", t) for t in re.split(r"(?m)^(?=## )", sys.stdout.getvalue())))

runs = [json.loads(line) for line in open(results_path)]
for r in runs:
    r["contenders"] = {c["contender"]: c for c in r["contenders"]}
writes = ["bare_update", "conditional_update", "read_then_write", "for_update", "flat_charge", "charge_credit",
          "flat_reserve_commit", "reserve_commit", "hand_reservation"]
reads = ["pk_select", "is_team_limited"]
label = {"bare_update": "bare `UPDATE` (minimum)", "pk_select": "primary-key `SELECT` (minimum)",
         "conditional_update": "one-statement conditional `UPDATE`", "read_then_write": "PL/pgSQL read-then-write",
         "for_update": "PL/pgSQL `SELECT ... FOR UPDATE`", "charge_credit": "**quota.charge_credit**",
         "reserve_commit": "**quota.reserve_credit + commit_credit**", "is_team_limited": "**quota.is_team_limited**",
         "hand_reservation": "reservation by hand (one-statement reserve + one-statement commit)",
         "flat_charge": "**quota.charge_credit**, parentless accounts",
         "flat_reserve_commit": "**quota.reserve_credit + commit_credit**, parentless accounts",
         "charge_credit@alerts": "**quota.charge_credit**, `quota.default_alerts = '80,100'`",
         "charge_own_alerts": "**quota.charge_credit**, `set_alerts(team, '{80,100}')` on every account"}
cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True, text=True).stdout.strip()
print("# Benchmark results\n")
print("Machine: %s, %s cores, %s; PostgreSQL %s; %s." % (
    cpu or platform.processor(), subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
    platform.platform(), subprocess.run(["pg_config", "--version"], capture_output=True, text=True).stdout.strip(),
    datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")))
default_workloads = "SPREAD HOT HOT-AUTO HOT-SLOTS ALERTS NEAR-LIMIT HOT-LIMIT TREE"
options = ("" if workloads.split() == default_workloads.split() else ' --workloads "%s"' % workloads) + \
    ("" if extras == "yes" else " --extras no")
print("\nCommand: `bench/run.sh --seconds %s --rounds %s --clients \"%s\" --slots %s%s`: pgbench -M prepared; each contender runs"
      " alone on its own rows, the contenders taking turns round after round; the median round's tps counts. Latency"
      " percentiles are over all rounds' transactions. pgbench and the server share the machine." % (seconds, rounds, clients_list, slots,
                                                                                       options))
def find(mode, workload, clients):
    return next((r for r in runs if r["mode"] == mode and r["workload"] == workload and r["clients"] == clients), None)

def tps(run, name):
    return run["contenders"][name]["tps"] if run and name in run["contenders"] else None

def cell(value, fmt="%.0f"):
    return fmt % value if value is not None else "–"

print("\n## Hot accounts\n")
print("One account taking every call: as a new user has it (HOT-AUTO: never given slots, automatic slotting), with"
      " automatic slotting off (HOT: every call takes the one row, as in 1.1), and pinned at %s slots (HOT-SLOTS),"
      " against the same call spread over 10,000 accounts (SPREAD). *ratio* = HOT-AUTO tps / SPREAD tps.\n" % slots)
print("| mode | clients | call | SPREAD tps | HOT tps (auto off) | HOT-AUTO tps | HOT-SLOTS tps | HOT-AUTO ÷ SPREAD |\n"
      "|---|---|---|---|---|---|---|---|")
for mode in ["durable", "cpu-bound"]:
    for clients in [int(c) for c in clients_list.split()]:
        found = {w: find(mode, w, clients) for w in ["SPREAD", "HOT", "HOT-AUTO", "HOT-SLOTS"]}
        if found["SPREAD"] is None or found["HOT-AUTO"] is None:
            continue
        for name in ["charge_credit", "reserve_commit"]:
            spread, hot, auto, slotted = (tps(found[w], name) for w in ["SPREAD", "HOT", "HOT-AUTO", "HOT-SLOTS"])
            print("| %s | %d | %s | %s | %s | %s | %s | **%.2f×** |" % (mode, clients, label[name], cell(spread), cell(hot),
                                                                     cell(auto), cell(slotted), auto / spread))
print()
print("## Reservations\n")
print("A reservation is two transactions (reserve, then commit) that write an account row and a hold row each. The"
      " hand-written one does the least SQL can for the same durable rows: one statement to reserve (conditional"
      " `UPDATE` of the account + `INSERT` of the hold) and one to commit (`UPDATE` of the hold + `UPDATE` of the"
      " account), on tables of quota's shape (`bench/scripts/hand_reservation.sql`). It has no idempotency, expiry"
      " handling, rollover, slots or alerts. On HOT-AUTO quota's account gets slots while the hand-written one takes"
      " its one row; on NEAR-LIMIT nearly every call is a denial.\n")
print("| mode | workload | clients | bare `UPDATE` tps | by hand tps | ÷ bare | quota tps | ÷ bare | quota ÷ by hand |\n"
      "|---|---|---|---|---|---|---|---|---|")
for mode in ["durable", "cpu-bound"]:
    for workload in ["SPREAD", "HOT", "HOT-AUTO", "NEAR-LIMIT"]:
        for clients in [int(c) for c in clients_list.split()]:
            r = find(mode, workload, clients)
            if r is None or tps(r, "hand_reservation") is None:
                continue
            bare, hand, quota = (tps(r, n) for n in ["bare_update", "hand_reservation", "reserve_commit"])
            print("| %s | %s | %d | %.0f | %.0f | %.2f× | %.0f | **%.2f×** | **%.2f×** |"
                  % (mode, workload, clients, bare, hand, hand / bare, quota, quota / bare, quota / hand))
print()
print("## Alerts configured, never reached\n")
print("SPREAD `charge_credit` on accounts without alerts, with `quota.default_alerts` set, and on accounts with"
      " thresholds of their own, side by side (*ratio* against the same call without alerts).\n")
print("| mode | clients | without alerts tps | default_alerts tps | ratio | own thresholds tps | ratio |\n|---|---|---|---|---|---|---|")
for mode in ["durable", "cpu-bound"]:
    for clients in [int(c) for c in clients_list.split()]:
        r = find(mode, "ALERTS", clients)
        if r is None:
            continue
        plain, default, own = (tps(r, n) for n in ["charge_credit", "charge_credit@alerts", "charge_own_alerts"])
        print("| %s | %d | %.0f | %.0f | **%.2f×** | %.0f | **%.2f×** |" % (mode, clients, plain, default, default / plain,
                                                                         own, own / plain))
print()
print("## Parent budgets\n")
print("32 teams under one org, each call on a random team (TREE: every call also spends from the org, which"
      " becomes a hot account with slots automatically), against the same calls on 32 parentless accounts"
      " (FLAT-32), the two taking turns in the same rounds. *ratio* = TREE tps / FLAT-32 tps.\n")
print("| mode | clients | call | FLAT-32 tps | TREE tps | ratio |\n|---|---|---|---|---|---|")
for mode in ["durable", "cpu-bound"]:
    for clients in [int(c) for c in clients_list.split()]:
        tree = find(mode, "TREE", clients)
        if tree is None:
            continue
        for flat, name in [("flat_charge", "charge_credit"), ("flat_reserve_commit", "reserve_commit")]:
            print("| %s | %d | %s | %.0f | %.0f | **%.2f×** |" % (mode, clients, label[name], tps(tree, flat),
                                                               tps(tree, name), tps(tree, name) / tps(tree, flat)))
print()
print("## Denials\n")
print("Near the limit every call is refused: quota's calls against the one-statement conditional `UPDATE`"
      " (*ratio*), on 10,000 accounts with 1 credit left (NEAR-LIMIT) and on one hot account at its limit (HOT-LIMIT).\n")
print("| mode | clients | workload | conditional `UPDATE` tps | charge_credit tps | ratio | reserve_credit tps | ratio |\n"
      "|---|---|---|---|---|---|---|---|")
for mode in ["durable", "cpu-bound"]:
    for clients in [int(c) for c in clients_list.split()]:
        for workload in ["NEAR-LIMIT", "HOT-LIMIT"]:
            r = find(mode, workload, clients)
            if r is None:
                continue
            cond, charge, reserve = (tps(r, n) for n in ["conditional_update", "charge_credit", "reserve_commit"])
            print("| %s | %d | %s | %.0f | %.0f | **%.2f×** | %.0f | **%.2f×** |"
                  % (mode, clients, workload, cond, charge, charge / cond, reserve, reserve / cond))
print()
print("\n*ratio* is tps against the bare `UPDATE` for writes and the primary-key `SELECT` for reads, at the same clients"
      " and workload. One reserve + commit transaction is two calls: two round trips and two database transactions.\n")
for mode in ["durable", "cpu-bound"]:
    print("## %s (synchronous_commit = %s)\n" % (mode, "on" if mode == "durable" else "off"))
    for workload in ["SPREAD", "HOT", "HOT-AUTO", "HOT-SLOTS", "ALERTS", "NEAR-LIMIT", "HOT-LIMIT", "TREE"]:
        rows = [r for r in runs if r["mode"] == mode and r["workload"] == workload]
        if not rows:
            continue
        desc = {"SPREAD": "10,000 accounts, uniform",
                "HOT": "one account per contender, automatic slotting off",
                "HOT-AUTO": "one account per contender, never given slots by hand: automatic slotting",
                "HOT-SLOTS": "one account per contender, pinned at %s slots" % slots,
                "NEAR-LIMIT": "10,000 accounts with 1 credit left: nearly every call denied",
                "HOT-LIMIT": "one account per contender with 1 credit left: nearly every call denied",
                "ALERTS": "10,000 accounts, uniform; alert thresholds configured, never reached",
                "TREE": "32 teams under one org, uniform over the teams; beside them 32 parentless accounts"}[workload]
        print("### %s (%s)\n" % (workload, desc))
        print("| contender | " + " | ".join("%d clients: tps / p50 / p99 ms / ratio" % r["clients"] for r in rows) + " |")
        print("|---|" + "---|" * len(rows))
        for name in writes + reads + ["charge_credit@alerts", "charge_own_alerts"]:
            if name not in rows[0]["contenders"]:
                continue
            cells = []
            for r in rows:
                c = r["contenders"][name]
                base = r["contenders"]["pk_select" if name in reads else "bare_update"]
                cells.append("%.0f / %.3f / %.3f / **%.2f×**" % (c["tps"], c["p50_ms"], c["p99_ms"], c["tps"] / base["tps"]))
            print("| %s | %s |" % (label[name], " | ".join(cells)))
        print()
if not race_rows.strip():
    sys.exit(0)
print("## The race\n")
print("32 clients, 100 attempts each (3,200), one account with a limit of 1,000:\n")
print("| contender | used | limit | overspend |\n|---|---|---|---|")
for line in race_rows.strip().splitlines():
    name, used, limit = line.split("|")
    print("| %s | %s | %s | %s |" % (label.get(name, name), used, limit, "**%d**" % (int(used) - int(limit)) if int(used) > int(limit) else "none"))
print("\n## Backend memory\n")
print("| calls in one session | contender | RssAnon after warm-up | at the end | growth |\n|---|---|---|---|---|")
for line in memory_rows.strip().splitlines():
    script, transactions, first, last = line.split("|")
    if not first or not last:
        print("| %s | %s | (finished before it could be sampled) | | |" % (transactions, script))
        continue
    calls = int(transactions) * (2 if script.startswith("reserve_commit") else 1)
    name = label[script.split(" ")[0]] + (" (one account, %s slots)" % slots if "slotted" in script else "")
    print("| %d | %s | %s kB | %s kB | %+d kB |" % (calls, name, first, last, int(last) - int(first)))
PY
if [ "$out" = "$QUOTA_ROOT/bench/RESULTS.md" ]; then cp "$results" "$QUOTA_ROOT/bench/results.jsonl"; else cp "$results" "${out%.md}.jsonl"; fi
say "wrote $out"
cat "$out"
