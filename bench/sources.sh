#!/usr/bin/env bash
# The sources benchmark (also `BENCH_SUITE=sources bench/run.sh`): each source of Tributary
# against the raw tool of its system, on the same broker, with the same bytes, in one run.
#
#   bench/sources.sh                                   # ~1 GB file, 3 repetitions
#   BENCH_FILE_MB=100 BENCH_MQTT_EVENTS=20000 BENCH_REPS=1 bench/sources.sh   # smoke run
#
# Measures, each repetition interleaved (rep 1 of everything, then rep 2, ...):
#   1. file → Kafka: `tributary ingest --config config/local.toml --stream clicks FILE` of
#      a generated NDJSON file (BENCH_FILE_MB, default 1024 MB of ~300-byte click events)
#      into a fresh 3-partition topic, timed from the command's start to its exit (every
#      event acknowledged by Kafka, acks=all, idempotent producer; its progress committed);
#   2. the same file sent with Kafka's console producer
#      (`org.apache.kafka.tools.ConsoleProducer`, what kafka-console-producer.sh runs, via
#      `scripts/services.sh kafka-tool`) to a fresh 3-partition topic, acks=all,
#      enable.idempotence=true, timed likewise (JVM start included, about a second);
#   3. MQTT → Kafka: `tributary run --role ingest` with an MQTT source (QoS 1, a persistent
#      session created beforehand) on the local Mosquitto; the first BENCH_MQTT_EVENTS lines
#      of the file published at QoS 1 by `mosquitto_pub -l` (50,000 lines per connection,
#      one connection after the other: see publish); timed from the publisher's
#      start until the node's `tributary_source_events_total{outcome="accepted"}` counts
#      them all (each appended to Kafka);
#   4. the same messages published the same way to the same broker and received by
#      `mosquitto_sub -q 1 -C N` (the raw broker path that the source replaces), timed
#      from the publisher's start until the subscriber has them all.
# Every run checks its count (the topic's records, the counter, the subscriber's count).
#
# Settings (environment): BENCH_REPS (3), BENCH_FILE_MB (1024), BENCH_MQTT_EVENTS
# (200000), BENCH_FILE_DIR (where the file is generated; default TMPDIR or /tmp; it is
# removed at the end), BENCH_BUILD (1; 0: use the binaries in CARGO_TARGET_DIR/release as
# they are), BENCH_RAW_OUT (a file to keep the raw JSON lines in).
# stdout: a markdown table. stderr: progress. Everything created (topics, databases, keys,
# the MQTT sessions, the file) is removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

REPS=${BENCH_REPS:-3}
FILE_MB=${BENCH_FILE_MB:-1024}
MQTT_EVENTS=${BENCH_MQTT_EVENTS:-200000}
FILE_DIR=${BENCH_FILE_DIR:-${TMPDIR:-/tmp}}
PARTITIONS=3
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN="$TARGET_DIR/release"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

command -v jq >/dev/null || die "jq is required (apt-get install jq)"
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required (it generates the file)"

STARTED=$SECONDS
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

log "starting the services"
eval "$(scripts/services.sh up)"
{ command -v mosquitto_pub && command -v mosquitto_sub; } >/dev/null ||
  die "mosquitto_pub/mosquitto_sub missing (scripts/services.sh up installs mosquitto-clients)"
MQTT_HOST_PORT=${TRIBUTARY_MQTT_URL#mqtt://}
MQTT_HOST=${MQTT_HOST_PORT%:*}
MQTT_PORT=${MQTT_HOST_PORT##*:}

if [[ ${BENCH_BUILD:-1} == 1 ]]; then
  log "building (release)"
  cargo build --release -p tributary -p tributary-bench >&2
else
  log "not building: the binaries in $BIN as they are"
fi

WORK=$(mktemp -d "$FILE_DIR/tributary-bench-sources.XXXXXX")
RAW="$WORK/raw.jsonl"
: >"$RAW"
PREFIX=$("$BIN/benchctl" prefix | jq -r .)
KEY="bench-$RANDOM$RANDOM"
SESSIONS=()
NODE_PID=""
log "run prefix $PREFIX, work dir $WORK"

cleanup() {
  local rc=$? id
  trap - EXIT INT TERM
  [[ -z $NODE_PID ]] || stop_tributary || true
  for id in "${SESSIONS[@]}"; do
    # A clean session under the same id removes the persistent one.
    mosquitto_sub -h "$MQTT_HOST" -p "$MQTT_PORT" -i "$id" -t "$PREFIX/none" -E \
      >/dev/null 2>&1 || true
  done
  log "removing $PREFIX* topics, databases and keys"
  "$BIN/benchctl" cleanup --prefix "$PREFIX" >/dev/null || log "cleanup failed (see above)"
  [[ -z ${BENCH_RAW_OUT:-} ]] || cp "$RAW" "$BENCH_RAW_OUT" || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
# seconds START END
elapsed() { jq -n --argjson a "$1" --argjson b "$2" '$b - $a'; }

# topic_records TOPIC: the sum of the topic's end offsets.
topic_records() {
  scripts/services.sh kafka-tool org.apache.kafka.tools.GetOffsetShell \
    --bootstrap-server "$TRIBUTARY_KAFKA_BROKERS" --topic "$1" 2>/dev/null |
    awk -F: '{ n += $NF } END { print n + 0 }'
}

# ---------------------------------------------------------------- the data

FILE="$WORK/events.ndjson"
MQTT_FILE="$WORK/mqtt.ndjson"
log "generating $FILE_MB MB of NDJSON"
python3 - "$FILE" "$FILE_MB" <<'EOF'
import sys, time, random
path, mb = sys.argv[1], int(sys.argv[2])
target = mb * 1000 * 1000
rng = random.Random(7)
pages = ["/", "/pricing", "/docs", "/blog", "/signup"] + [f"/p/{i}" for i in range(195)]
now = int(time.time() * 1000)
written = 0
n = 0
with open(path, "w", buffering=1 << 20) as out:
    lines = []
    while written < target:
        ts = now - 600_000 + n % 600_000
        page = pages[n % len(pages)]
        line = (
            f'{{"id":"f-{n:010d}","ts":{ts},"key":"{page}","payload":{{"user":"u{rng.randrange(1000)}",'
            f'"action":"view","referrer":"search","country":"fr","duration_ms":{rng.randrange(5000)},'
            f'"agent":"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0","session":"s-{rng.randrange(1 << 30):09d}",'
            f'"screen":"1920x1080"}}}}\n'
        )
        lines.append(line)
        written += len(line)
        n += 1
        if len(lines) == 10000:
            out.write("".join(lines))
            lines = []
    out.write("".join(lines))

EOF
FILE_EVENTS=$(wc -l <"$FILE")
FILE_BYTES=$(stat -c %s "$FILE")
head -n "$MQTT_EVENTS" "$FILE" >"$MQTT_FILE"
MQTT_EVENTS=$(wc -l <"$MQTT_FILE")
MQTT_BYTES=$(stat -c %s "$MQTT_FILE")
PUBLISH_PART=50000 # at most 65535: see publish
split -l "$PUBLISH_PART" -d -a 3 "$MQTT_FILE" "$WORK/mqtt-part."
log "$FILE_EVENTS events, $FILE_BYTES bytes; MQTT: $MQTT_EVENTS messages, $MQTT_BYTES bytes"

# rates EVENTS BYTES SECONDS [EXTRA-JSON]: the JSON of one measurement.
rates() {
  local extra=${4:-}
  [[ -n $extra ]] || extra='{}'
  jq -nc --argjson n "$1" --argjson b "$2" --argjson s "$3" --argjson x "$extra" \
    '{events: $n, bytes: $b, seconds: ($s * 1000 | round / 1000),
      events_per_sec: ($n / $s | round), mb_per_sec: ($b / $s / 1e6 * 10 | round / 10)} + $x'
}

# ---------------------------------------------------------------- tributary processes

# accepted SOURCE: the node's count of events the source appended.
accepted() {
  curl -s "$NODE_URL/metrics" |
    awk -v s="source=\"$1\"" 'index($0, "tributary_source_events_total{") == 1 && index($0, s) && index($0, "outcome=\"accepted\"") { n += $NF } END { print n + 0 }'
}

# ---------------------------------------------------------------- measurements

# file_tributary REP: `tributary ingest` of the file into a fresh topic.
file_tributary() {
  local rep=$1 tag url t0 t1 rc=0 env cpu
  tag="${PREFIX}_f$rep"
  url=$("$BIN/benchctl" create-db --name "$tag" | jq -r .)
  mapfile -t env < <(env_for "$tag" "$url")
  t0=$(now)
  env "${env[@]}" /usr/bin/time -f '%U %S' -o "$WORK/time" "$BIN/tributary" ingest \
    --config config/local.toml --stream clicks --state "$WORK/progress-$rep.json" "$FILE" \
    </dev/null >"$WORK/ingest.out" 2>"$WORK/ingest.err" || rc=$?
  t1=$(now)
  ((rc == 0)) || { tail -n 20 "$WORK/ingest.err" >&2; die "tributary ingest exited $rc"; }
  local stored
  stored=$(topic_records "$tag.clicks")
  ((stored == FILE_EVENTS)) || die "tributary ingest: $stored records in $tag.clicks, $FILE_EVENTS expected"
  cpu=$(awk '{ print $1 + $2 }' "$WORK/time")
  record file-tributary "$(rates "$FILE_EVENTS" "$FILE_BYTES" "$(elapsed "$t0" "$t1")" \
    "{\"cpu_seconds\": $cpu, \"summary\": $(tail -n 1 "$WORK/ingest.out" | jq -Rc .)}")"
}

# file_console REP: the same file with Kafka's console producer.
file_console() {
  local rep=$1 topic t0 t1 rc=0 stored
  topic="$PREFIX.console$rep"
  "$BIN/benchctl" create-topic --name "$topic" --partitions "$PARTITIONS"
  t0=$(now)
  scripts/services.sh kafka-tool org.apache.kafka.tools.ConsoleProducer \
    --bootstrap-server "$TRIBUTARY_KAFKA_BROKERS" --topic "$topic" \
    --command-property acks=all --command-property enable.idempotence=true \
    <"$FILE" >"$WORK/console.out" 2>&1 || rc=$?
  t1=$(now)
  ((rc == 0)) || { tail -n 20 "$WORK/console.out" >&2; die "the console producer exited $rc"; }
  stored=$(topic_records "$topic")
  ((stored == FILE_EVENTS)) || die "console producer: $stored records in $topic, $FILE_EVENTS expected"
  record file-console "$(rates "$FILE_EVENTS" "$FILE_BYTES" "$(elapsed "$t0" "$t1")")"
}

# session ID TOPIC: creates the persistent session ID subscribed to TOPIC at QoS 1.
session() {
  SESSIONS+=("$1")
  mosquitto_sub -h "$MQTT_HOST" -p "$MQTT_PORT" -c -i "$1" -q 1 -t "$2" -E
}

# publish TOPIC: the MQTT messages at QoS 1, one per line, by one `mosquitto_pub -l` per
# part of the file (PUBLISH_PART lines each, one after the other). Not one for them all:
# once stdin is read, mosquitto_pub (2.0.11) disconnects when the broker acknowledges a
# message whose packet id is the last line's, and ids wrap after 65535, so with more lines
# it stops at an earlier message of that id and exits 0 with the rest never sent (with
# 200,000 lines it sent 68,936 or 3,396, depending on how far ahead of the broker it ran).
publish() {
  local part
  for part in "$WORK"/mqtt-part.*; do
    mosquitto_pub -h "$MQTT_HOST" -p "$MQTT_PORT" -q 1 -t "$1" -l <"$part"
  done
}

# mqtt_tributary REP: `tributary run --role ingest` with an MQTT source.
mqtt_tributary() {
  local rep=$1 tag url topic client config t0 t1 n i env cpu0 cpu1 clk
  tag="${PREFIX}_m$rep"
  url=$("$BIN/benchctl" create-db --name "$tag" | jq -r .)
  topic="$PREFIX/m$rep"
  client="$tag-source"
  config="$WORK/mqtt-$rep.toml"
  cat config/local.toml - >"$config" <<EOF

[[sources]]
kind = "mqtt"
name = "bench-mqtt"
url = "$TRIBUTARY_MQTT_URL"
topics = ["$topic"]
client_id = "$client"
stream = "clicks"
ts_format = "epoch_ms"
EOF
  session "$client" "$topic"
  mapfile -t env < <(env_for "$tag" "$url")
  start_tributary "mqtt-$rep" "$config" ingest "${env[@]}"
  clk=$(getconf CLK_TCK)
  cpu0=$(awk '{ print $14 + $15 }' "/proc/$NODE_PID/stat")
  t0=$(now)
  publish "$topic"
  for ((i = 0; ; i++)); do
    n=$(accepted bench-mqtt)
    ((n >= MQTT_EVENTS)) && break
    ((i < 600 * 20)) || die "the MQTT source appended $n of $MQTT_EVENTS in 600 s"
    sleep 0.05
  done
  t1=$(now)
  cpu1=$(awk '{ print $14 + $15 }' "/proc/$NODE_PID/stat")
  stop_tributary
  ((n == MQTT_EVENTS)) || die "the MQTT source appended $n, $MQTT_EVENTS published"
  record mqtt-tributary "$(rates "$MQTT_EVENTS" "$MQTT_BYTES" "$(elapsed "$t0" "$t1")" \
    "{\"cpu_seconds\": $(jq -n "($cpu1 - $cpu0) / $clk")}")"
}

# mqtt_raw REP: mosquitto_pub to mosquitto_sub through the same broker.
mqtt_raw() {
  local rep=$1 topic client t0 t1 sub n
  topic="$PREFIX/r$rep"
  client="${PREFIX}_r$rep-sub"
  session "$client" "$topic"
  mosquitto_sub -h "$MQTT_HOST" -p "$MQTT_PORT" -c -i "$client" -q 1 -t "$topic" \
    -C "$MQTT_EVENTS" >"$WORK/sub.out" 2>&1 &
  sub=$!
  sleep 0.5
  t0=$(now)
  publish "$topic"
  wait "$sub" || die "mosquitto_sub failed: $(tail -n 5 "$WORK/sub.out")"
  t1=$(now)
  n=$(wc -l <"$WORK/sub.out")
  ((n == MQTT_EVENTS)) || die "mosquitto_sub received $n, $MQTT_EVENTS published"
  record mqtt-raw "$(rates "$MQTT_EVENTS" "$MQTT_BYTES" "$(elapsed "$t0" "$t1")")"
}

for ((rep = 1; rep <= REPS; rep++)); do
  log "repetition $rep of $REPS"
  # The order turns with the repetition, so drift does not favour one side.
  if ((rep % 2)); then
    file_tributary "$rep"; file_console "$rep"; mqtt_tributary "$rep"; mqtt_raw "$rep"
  else
    file_console "$rep"; file_tributary "$rep"; mqtt_raw "$rep"; mqtt_tributary "$rep"
  fi
done

# ---------------------------------------------------------------- the table

row() {
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$(median "$2" .events_per_sec)" \
    "$(median "$2" .mb_per_sec)" "$(median "$2" .seconds)" "$(runs "$2" .events_per_sec)"
}

cat <<EOF
$FILE_EVENTS events, $FILE_BYTES bytes in the file; $MQTT_EVENTS MQTT messages ($MQTT_BYTES bytes); medians of $REPS repetitions; $(nproc) cores; load before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg); $((SECONDS - STARTED)) s.

| measurement | events/s | MB/s | seconds | events/s per run |
|---|---|---|---|---|
EOF
row "file: \`tributary ingest\` → Kafka" file-tributary
row "file: Kafka console producer" file-console
row "MQTT: source (\`tributary run --role ingest\`) → Kafka" mqtt-tributary
row "MQTT: \`mosquitto_pub\` → \`mosquitto_sub\`" mqtt-raw
printf '| ratio file (tributary / console producer) | %s | | | |\n' \
  "$(ratio "$(median file-tributary .events_per_sec)" "$(median file-console .events_per_sec)")"
printf '| ratio MQTT (source / mosquitto_sub) | %s | | | |\n' \
  "$(ratio "$(median mqtt-tributary .events_per_sec)" "$(median mqtt-raw .events_per_sec)")"
printf '\nCPU seconds of tributary (median): ingest %s, MQTT node %s.\n' \
  "$(median file-tributary .cpu_seconds)" "$(median mqtt-tributary .cpu_seconds)"
