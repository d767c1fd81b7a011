#!/usr/bin/env bash
# The Kafka read floor: the same pre-filled topic read to its end by Tributary's reader on
# rdkafka (`pipeline --read-only raw`) and by rskafka, which decodes whole record batches
# in the reading task (bench/kafka-floor), interleaved; one JSON line per read, each with
# its process's CPU-s per 1M records.
#
#   bench/kafka-floor.sh [REPS] [EVENTS]       (default 3 reps of 2000000 count events)
#
# Needs the services (scripts/services.sh up) and release builds of `pipeline` and
# `benchctl` (PIPELINE, BENCHCTL; default target/release/...); builds bench/kafka-floor.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/services.sh env)"
REPS=${1:-3} EVENTS=${2:-2000000}
PIPELINE=${PIPELINE:-target/release/pipeline}
BENCHCTL=${BENCHCTL:-target/release/benchctl}
(cd bench/kafka-floor && cargo build --release --quiet)
FLOOR=bench/kafka-floor/target/release/kafka-floor
PREFIX=$("$BENCHCTL" prefix | jq -r .)
dir=$(mktemp -d)
trap '"$BENCHCTL" cleanup --prefix "$PREFIX" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
topic=$("$PIPELINE" --mode kafka --workload count --events "$EVENTS" --partitions 3 \
  --prefix "$PREFIX" --prefill-only "$dir" 2>/dev/null | jq -r .topic)
for rep in $(seq 1 "$REPS"); do
  "$PIPELINE" --mode kafka --workload count --events "$EVENTS" --partitions 3 \
    --prefix "${PREFIX}_r$rep" --from "$dir" --read-only raw --no-archive 2>/dev/null |
    jq -c --arg r "$rep" '{rep: $r, client: "rdkafka (Tributary reader)", records: .records_read,
      events_per_sec: .pipeline_events_per_sec, cpu_s_per_million: .cpu_s_per_million_events}'
  "$FLOOR" "$TRIBUTARY_KAFKA_BROKERS" "$topic" 3 |
    jq -c --arg r "$rep" '{rep: $r, client, records, events_per_sec, cpu_s_per_million}'
done
