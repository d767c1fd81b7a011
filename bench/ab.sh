#!/usr/bin/env bash
# A/B drains of two (or more) `pipeline` binaries, interleaved, on freshly pre-filled
# 3-partition Kafka topics (each drain fills its own), one JSON line per drain:
#
#   bench/ab.sh REPS EVENTS "WORKLOADS" NAME=BINARY...
#   bench/ab.sh 3 2000000 "count yahoo" old=target/bench-old/release/pipeline new=target/release/pipeline
#   bench/ab.sh 3 2000000 count raw="target/release/pipeline --read-only raw" new=target/release/pipeline
#
# A variant's command may carry arguments of its own (split at spaces), such as
# `--read-only raw|decode`: the log client's floor under the same drain.
#
# CPU is the `pipeline` process's over the drain, read from outside (`benchctl
# watch-drain`), with the Kafka broker's. Needs the services (scripts/services.sh up) and
# a release build of benchctl (`BENCHCTL`, default target/release/benchctl). Everything it
# creates (bench_<id>...) is removed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/services.sh env)"
KAFKA_PID=$(cat "${TRIBUTARY_SERVICES_DIR:-$HOME/.cache/tributary/services}/kafka/kafka.pid")
BENCHCTL=${BENCHCTL:-target/release/benchctl}
REPS=$1 EVENTS=$2 WORKLOADS=$3
shift 3
PREFIX=$("$BENCHCTL" prefix | jq -r .)
trap '"$BENCHCTL" cleanup --prefix "$PREFIX" >/dev/null 2>&1 || true' EXIT
for rep in $(seq 1 "$REPS"); do
  for workload in $WORKLOADS; do
    for variant in "$@"; do
      name=${variant%%=*}
      read -ra command <<<"${variant#*=}"
      out=$(setsid "$BENCHCTL" watch-drain --watch kafka="$KAFKA_PID" -- \
        "${command[@]}" --mode kafka --events "$EVENTS" --partitions 3 --checkpoint-interval-ms 1000 \
        --no-archive --prefix "${PREFIX}_${workload:0:1}$rep$(tr -dc a-z0-9 <<<"$name" | head -c 8)" \
        --label "$name" --workload "$workload" 2>/dev/null </dev/null)
      jq -c --arg w "$workload" --arg r "$rep" --arg n "$name" \
        '{workload: $w, rep: $r, binary: $n, events_per_sec: .pipeline_events_per_sec,
          cpu_s_per_million: .watched.cpu_s_per_million_events, kafka_cpu_s: .watched.processes.kafka_cpu_s}' <<<"$out"
    done
  done
done
