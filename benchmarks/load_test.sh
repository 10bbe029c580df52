#!/usr/bin/env bash
# Load test of `prosocial serve` on loopback: starts the service, holds RATE requests/s on /v1/safety for
# DURATION with locust (headless), prints p50/p99 latency and the error count, stops the service gracefully.
# Exit status 1 if any request failed.
#
#   benchmarks/load_test.sh                       # default detector (canary-mini), 20 req/s, 60 s
#   DETECTOR=keywords RATE=50 benchmarks/load_test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DETECTOR=${DETECTOR:-canary-mini}
RATE=${RATE:-20}            # requests per second (one locust user per request/s)
DURATION=${DURATION:-60s}
PORT=${PORT:-8765}
OUT=${OUT:-runs/load_test}
PY=${PY:-.venv/bin/python}
HOST="http://127.0.0.1:${PORT}"
mkdir -p "$OUT"

"$PY" -c 'import typer; from prosocial.cli.serve import serve; typer.run(serve)' \
  --host 127.0.0.1 --port "$PORT" --detector "$DETECTOR" --log-level warning >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT

for _ in $(seq 600); do  # models load lazily; wait (up to 5 min) until /readyz says they are in memory
  curl -fs "$HOST/readyz" >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { echo "the service died:"; cat "$OUT/server.log"; exit 1; }
  curl -s "$HOST/readyz" 2>/dev/null | grep -q '"failed"' && { curl -s "$HOST/readyz"; echo; exit 1; }
  sleep 0.5
done
curl -fs "$HOST/readyz" || { echo "the service never became ready:"; cat "$OUT/server.log"; exit 1; }
echo

echo "detector=$DETECTOR rate=${RATE}/s duration=$DURATION on $(nproc) cores"
"$PY" -m locust -f benchmarks/locustfile.py --headless --host "$HOST" -u "$RATE" -r "$RATE" \
  --run-time "$DURATION" --stop-timeout 10 --csv "$OUT/locust" --only-summary >"$OUT/locust.log" 2>&1 || true

"$PY" - "$OUT/locust_stats.csv" <<'PYEOF'
import csv, sys
row = next(r for r in csv.DictReader(open(sys.argv[1])) if r["Name"] == "Aggregated")
print(f"requests {row['Request Count']}  errors {row['Failure Count']}  throughput {float(row['Requests/s']):.1f} req/s")
print(f"latency ms: p50 {row['50%']}  p90 {row['90%']}  p99 {row['99%']}  max {float(row['Max Response Time']):.0f}")
sys.exit(1 if int(row["Failure Count"]) else 0)
PYEOF
