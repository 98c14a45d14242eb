#!/usr/bin/env bash
# Loopback HTTP comparison (DESIGN §6): the same hyper hello-world server under the same wrk
# load, with no instrumentation, pollwatch (hooked, defaults), pollwatch attach mode,
# tokio-metrics' TaskMonitor on every connection task, and console-subscriber.
#
#   bash bench-compare/run.sh            # from the repository root; prints a Markdown table
#
# Settings (environment): ROUNDS (default 5), DURATION seconds per run (10), CONNECTIONS (32),
# WORKERS of the server runtime (2), WRK_THREADS (1), ONLY (space-separated subset of the
# instrumentations; `none` is always run, every ratio is against it).
#
# Installs wrk (Debian package) when it is missing, builds the server in release mode with
# `--cfg tokio_unstable` (console-subscriber and hooked mode need it; so the `none` baseline
# is that same tokio build), then runs rounds: each round runs every instrumentation once,
# the order rotated each round, one fresh server process per run, wrk from a second process
# against 127.0.0.1. Ratios are against the `none` run of the same round.
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
WORKERS="${WORKERS:-2}"
WRK_THREADS="${WRK_THREADS:-1}"
ALL=(none pollwatch pollwatch-attach tokio-metrics console)
if [[ -n "${ONLY:-}" ]]; then
    read -r -a ALL <<<"none ${ONLY//none/}"
fi

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "need root (or sudo) to run: $*" >&2
        return 1
    fi
}

if ! command -v wrk >/dev/null; then
    echo "installing Debian's wrk package" >&2
    as_root apt-get update >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk >&2
fi

export CARGO_TARGET_DIR="$PWD/target"
RUSTFLAGS="--cfg tokio_unstable" cargo build --release --locked --bins >&2
SERVER="$CARGO_TARGET_DIR/release/pollwatch-bench-compare"
REPORT="$CARGO_TARGET_DIR/release/report"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# p99 from wrk's --latency distribution, in microseconds ("99%  1.23ms").
p99_us() {
    awk '$1 == "99%" {
        v = $2; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
        f = (unit == "us") ? 1 : (unit == "ms") ? 1000 : (unit == "s") ? 1000000 : -1
        printf "%.1f\n", v * f
    }' "$1"
}

# One run: a fresh server with instrumentation $2, warmed up for 1 s, then measured.
run_one() {
    local round=$1 what=$2 out="$WORK/server-$1-$2.log" wrk_out="$WORK/wrk-$1-$2.txt"
    "$SERVER" "$what" --workers "$WORKERS" --max-seconds $((DURATION + 60)) >"$out" 2>&1 &
    SERVER_PID=$!
    local addr="" i
    for i in $(seq 1 100); do
        addr="$(sed -n 's/^listening on \([0-9.:]*\) .*/\1/p' "$out")"
        [[ -n "$addr" ]] && break
        sleep 0.1
    done
    if [[ -z "$addr" ]]; then
        echo "server ($what) did not start:" >&2
        cat "$out" >&2
        return 1
    fi
    echo "round $round: $(head -n 1 "$out")" >&2
    wrk -t1 -c"$CONNECTIONS" -d1s "http://$addr/" >/dev/null
    wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://$addr/" >"$wrk_out"
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    local rps p99 errors
    rps="$(awk '/^Requests\/sec:/ { print $2 }' "$wrk_out")"
    p99="$(p99_us "$wrk_out")"
    errors="$(awk '/Socket errors|Non-2xx/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) n += $i }
                   END { print n + 0 }' "$wrk_out")"
    echo "$round $what $rps $p99 $errors" >>"$WORK/results.txt"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
START=$(date -u +%H:%M:%S)
n=${#ALL[@]}
for round in $(seq 1 "$ROUNDS"); do
    for k in $(seq 0 $((n - 1))); do
        run_one "$round" "${ALL[$(((round - 1 + k) % n))]}"
    done
done
END=$(date -u +%H:%M:%S)

echo "loopback hello world: hyper http1, server runtime $WORKERS workers; wrk -t$WRK_THREADS" \
    "-c$CONNECTIONS -d${DURATION}s --latency, after a 1 s warm-up; $ROUNDS rounds, order rotated" \
    "each round; $START–$END UTC; load average after: $(cut -d' ' -f1-3 /proc/loadavg);" \
    "$(nproc) CPUs shared by the server and wrk"
echo
"$REPORT" <"$WORK/results.txt"
