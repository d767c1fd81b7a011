#!/usr/bin/env bash
# Tributary's benchmark: one run, every measurement repeated, medians as a markdown table.
#
#   bench/run.sh                      # 1M events per ingest run, 3 repetitions
#   BENCH_EVENTS=50000 BENCH_REPS=1 bench/run.sh   # a quick smoke run
#   BENCH_SUITE=pipelines bench/run.sh             # the pipeline suite (below) instead
#
# The default suite (BENCH_SUITE=default) measures (see bench/README.md for what each
# number means):
#   1. raw Kafka: Kafka's ProducerPerformance, acks=all enable.idempotence=true, on a fresh
#      3-partition topic, 200-byte records and records the size of Tributary's log records;
#   2. Tributary HTTP ingest into Kafka (`tributary run --config config/local.toml`, every
#      name fresh), with every role (`--role all`) and with the ingest role only;
#   3. Tributary HTTP ingest in the embedded mode (redb + SQLite), same two role sets;
#   4. pipeline drain: the engine over a pre-filled log, embedded and Kafka + PostgreSQL.
# The pipeline suite (BENCH_SUITE=pipelines) drains a pre-filled 3-partition Kafka topic
# into PostgreSQL (no archive) and measures events/s and the drain's CPU-seconds per
# million events, from outside the process (`benchctl watch-drain`), for:
#   a. the count workload (count per page, 1-minute tumbling windows) on the engine of
#      BENCH_BASELINE_REV (default b375453, the engine before the general operator model;
#      its `pipeline` binary, built in a git worktree into target/bench-baseline);
#   b. the same count workload on this checkout's engine;
#   c. the same events with a filter and count/sum/avg/quantile per page;
#   d. the Yahoo Streaming Benchmark: views per campaign through an ad → campaign lookup,
#      10-second tumbling windows; e. the same without the lookup (views per ad); and f.
#      a. and b. again on a 1-partition topic (one task on either engine).
# The peers suite (BENCH_SUITE=peers) pre-fills one 3-partition Kafka topic per pipeline
# and repetition (`pipeline --prefill-only`) and drains that same topic with Tributary
# (`pipeline --from`, into PostgreSQL), Apache Flink 2.x (a MiniCluster, parallelism 2,
# exactly-once checkpoints every second) and Kafka Streams 4.x (exactly_once_v2, 2 stream
# threads, commit interval 1 s) — bench/peers/, built with Maven — for two pipelines: the
# count per page in 1-minute tumbling windows and the Yahoo Streaming Benchmark. Every
# engine's CPU is measured from outside (`benchctl watch-drain`), and every window's count
# of every engine is checked against the ground truth of the pre-fill.
# The scale suite (BENCH_SUITE=scale) runs one pipeline (the count per page, on a
# 6-partition topic) in 1, 2 and 3 `tributary run --role process` processes (the release
# binary) sharing its shards through its consumer group, with the `scale` binary: their
# drain of a pre-filled topic (events/s, CPU-s per 1M events, when the group was
# balanced), their CPU per event under a steady live load, and the time from a `kill -9`
# of one of two processes until its shards' lag is back under 1 s; every result row is
# checked against the ground truth, across the kill too.
# The gateway suite (BENCH_SUITE=gateway) measures what authentication and the Redis rate
# limit cost a query: `tributary run --role gateway` (config/local.toml) with both off
# ("off": `[auth] anonymous_scopes = ["read"]`, requests without a credential, `[rate_limit]
# enabled = false`), both on ("on": the bootstrap API key on every request, the rate limit
# on the Redis backend with quotas far above the load: every request is checked twice, per
# key and per address, none refused; synced with Redis every 50 ms, the default), the same
# with a Redis round trip per check ("on-exact": `[rate_limit] sync_interval = "0s"`), and
# both on without the results cache ("on-nocache":
# `[http] results_cache_ttl = "0s"`, every results query read from PostgreSQL), under the
# `gateway` load generator: a closed loop (BENCH_GATEWAY_CONCURRENCY connections for
# BENCH_GATEWAY_SECONDS) for the most requests/s, and an open loop at BENCH_GATEWAY_RATE
# requests/s for p99; for two queries: a pipeline's results (answered from the results
# cache within its TTL, else PostgreSQL) and the pipeline list (statuses cached in Redis).
# Repetitions are interleaved (rep 1 of everything, then rep 2, ...) so that slow drift of
# the machine hits every measurement alike.
#
# Settings (environment): BENCH_SUITE (default | pipelines | peers | scale | gateway), BENCH_EVENTS (1000000),
# BENCH_REPS (3), BENCH_BATCH (500 events per HTTP request), BENCH_CONCURRENCY (8 requests
# in flight), BENCH_PIPELINE_EVENTS (events pre-filled for each drain: 500000, 2000000 in
# the pipeline suite, 5000000 in the scale suite), BENCH_CHECKPOINT_MS (the drain's
# checkpoint interval: 250, 1000 in the pipeline and scale suites; the drain time is rounded
# up by up to one interval), BENCH_RAW_OUT (a file to keep the raw JSON lines in),
# BENCH_BUILD (1; 0: run the binaries in target/release as they are); pipeline suite only: BENCH_BASELINE_REV (the commit
# to compare with; empty: none), BENCH_BASELINE_BIN (its prebuilt `pipeline` binary, instead
# of building it); peers suite only: BENCH_PEER_JAVA_OPTS (the JVMs' options, default
# "-Xms2g -Xmx2g"); scale suite only: BENCH_SCALE_PARTITIONS (6), BENCH_SCALE_PROCESSES
# ("1 2 3"), BENCH_SCALE_STEADY_RATE (100000 events/s), BENCH_SCALE_RATE (20000 events/s in
# the failover), BENCH_SCALE_FAILOVER_CHECKPOINT_MS (200), BENCH_SCALE_SESSION_TIMEOUT (the
# processes' `[log] group_session_timeout`, "10s").
#
# stdout: the markdown table only. stderr: progress. Everything this script starts
# (tributary processes) is stopped on exit, and every topic, database and key it created
# (all named bench_<id>...) is removed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SUITE=${BENCH_SUITE:-default}
EVENTS=${BENCH_EVENTS:-1000000}
REPS=${BENCH_REPS:-3}
BATCH=${BENCH_BATCH:-500}
CONCURRENCY=${BENCH_CONCURRENCY:-8}
if [[ $SUITE == pipelines || $SUITE == peers ]]; then
  PIPELINE_EVENTS=${BENCH_PIPELINE_EVENTS:-2000000}
  CHECKPOINT_MS=${BENCH_CHECKPOINT_MS:-1000}
elif [[ $SUITE == scale ]]; then
  PIPELINE_EVENTS=${BENCH_PIPELINE_EVENTS:-5000000}
  CHECKPOINT_MS=${BENCH_CHECKPOINT_MS:-1000}
else
  PIPELINE_EVENTS=${BENCH_PIPELINE_EVENTS:-500000}
  CHECKPOINT_MS=${BENCH_CHECKPOINT_MS:-250}
fi
GATEWAY_CONCURRENCY=${BENCH_GATEWAY_CONCURRENCY:-32}
GATEWAY_SECONDS=${BENCH_GATEWAY_SECONDS:-5}
GATEWAY_RATE=${BENCH_GATEWAY_RATE:-5000}
SCALE_PARTITIONS=${BENCH_SCALE_PARTITIONS:-6}
SCALE_PROCESSES=${BENCH_SCALE_PROCESSES:-"1 2 3"}
SCALE_STEADY_RATE=${BENCH_SCALE_STEADY_RATE:-100000}
SCALE_RATE=${BENCH_SCALE_RATE:-20000}
SCALE_FAILOVER_CHECKPOINT_MS=${BENCH_SCALE_FAILOVER_CHECKPOINT_MS:-200}
SCALE_SESSION_TIMEOUT=${BENCH_SCALE_SESSION_TIMEOUT:-10s}
BASELINE_REV=${BENCH_BASELINE_REV-b375453}
BASELINE_BIN=${BENCH_BASELINE_BIN:-}
PARTITIONS=3
KEY="bench-$RANDOM$RANDOM"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN="$TARGET_DIR/release"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# The sources suite is a script of its own (file and MQTT ingest against Kafka's console
# producer and mosquitto_pub/mosquitto_sub).
[[ $SUITE != sources ]] || exec "$ROOT/bench/sources.sh"
[[ $SUITE == default || $SUITE == pipelines || $SUITE == peers || $SUITE == scale || $SUITE == gateway ]] ||
  die "BENCH_SUITE must be default, pipelines, peers, scale, gateway or sources"
command -v jq >/dev/null || die "jq is required (apt-get install jq)"
command -v curl >/dev/null || die "curl is required"

STARTED=$SECONDS
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

log "starting the services"
eval "$(scripts/services.sh up)"

SERVICES_STATE="${TRIBUTARY_SERVICES_DIR:-$HOME/.cache/tributary/services}"
KAFKA_PID=$(cat "$SERVICES_STATE/kafka/kafka.pid" 2>/dev/null || echo 0)
FERRET_PID=$(cat "$SERVICES_STATE/ferretdb/ferretdb.pid" 2>/dev/null || echo 0)

if [[ ${BENCH_BUILD:-1} != 1 ]]; then
  log "not building: the binaries in $BIN as they are"
elif [[ $SUITE == pipelines || $SUITE == peers ]]; then
  log "building (release)"
  cargo build --release -p tributary-bench >&2
else
  log "building (release)"
  cargo build --release -p tributary -p tributary-bench >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tributary-bench.XXXXXX")
RAW="$WORK/raw.jsonl"
: >"$RAW"
PREFIX=$("$BIN/benchctl" prefix | jq -r .)
log "run prefix $PREFIX, work dir $WORK"

NODE_PID=""
NODE_URL=""
CHILD_PID=""
WORKTREE=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $CHILD_PID ]]; then
    kill -TERM -- "-$CHILD_PID" 2>/dev/null || true
    wait "$CHILD_PID" 2>/dev/null || true
  fi
  if [[ -n $NODE_PID ]]; then
    stop_tributary || true
  fi
  if [[ -n $WORKTREE ]]; then
    git worktree remove --force "$WORKTREE" >&2 || log "could not remove the worktree $WORKTREE"
  fi
  log "removing $PREFIX* topics, databases and keys"
  "$BIN/benchctl" cleanup --prefix "$PREFIX" >/dev/null || log "cleanup failed (see above)"
  if [[ -n ${BENCH_RAW_OUT:-} ]]; then
    cp "$RAW" "$BENCH_RAW_OUT" || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_child OUT ERR COMMAND...: runs COMMAND in a process group of its own, stdout to OUT
# and stderr to ERR (`-`: this script's stderr), and waits for it. Waiting with `wait` (not
# in the foreground) lets a signal to this script be handled at once; the EXIT trap then
# stops the whole group.
run_child() {
  local out=$1 err=$2 rc=0
  shift 2
  if [[ $err == - ]]; then
    setsid "$@" >"$out" </dev/null &
  else
    setsid "$@" >"$out" 2>"$err" </dev/null &
  fi
  CHILD_PID=$!
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  return "$rc"
}

# ---------------------------------------------------------------- reading the results

row() { # LABEL NAME: an ingest-like row (events/s, p50, p99)
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$(median "$2" .events_per_sec)" \
    "$(median "$2" .latency_ms.p50)" "$(median "$2" .latency_ms.p99)" "$(runs "$2" .events_per_sec)"
}
prow() { # LABEL NAME FIELD
  printf '| %s | %s | | | %s |\n' "$1" "$(median "$2" ".$3")" "$(runs "$2" ".$3")"
}

# ---------------------------------------------------------------- measurements

# baseline REP SIZE NAME [PROP=VALUE...]: ProducerPerformance on a fresh topic, with
# acks=all enable.idempotence=true and the extra producer properties.
baseline() {
  local rep=$1 size=$2 name=$3 topic out line
  shift 3
  topic="$PREFIX.raw$rep.$name"
  "$BIN/benchctl" create-topic --name "$topic" --partitions "$PARTITIONS"
  run_child "$WORK/pp.out" "$WORK/pp.out" scripts/services.sh kafka-tool \
    org.apache.kafka.tools.ProducerPerformance \
    --topic "$topic" --num-records "$EVENTS" --record-size "$size" --throughput -1 \
    --command-property bootstrap.servers="$TRIBUTARY_KAFKA_BROKERS" acks=all \
    enable.idempotence=true "$@" || { cat "$WORK/pp.out" >&2; die "ProducerPerformance failed"; }
  out=$(<"$WORK/pp.out")
  # "200000 records sent, 96061.4 records/sec (18.32 MB/sec), 95.17 ms avg latency,
  #  427.00 ms max latency, 47 ms 50th, 241 ms 95th, 269 ms 99th, 296 ms 99.9th."
  line=$(grep -E '^[0-9]+ records sent' <<<"$out" | tail -n 1)
  [[ -n $line ]] || { printf '%s\n' "$out" >&2; die "no summary from ProducerPerformance"; }
  record "$name" "$(jq -nc --arg l "$line" --argjson size "$size" '
    ($l | capture("(?<n>[0-9]+) records sent, (?<r>[0-9.]+) records/sec.* (?<p50>[0-9]+) ms 50th, (?<p95>[0-9]+) ms 95th, (?<p99>[0-9]+) ms 99th")) as $m
    | {bench: "raw", record_bytes: $size, events: ($m.n | tonumber),
       events_per_sec: ($m.r | tonumber | round),
       latency_ms: {p50: ($m.p50 | tonumber), p99: ($m.p99 | tonumber)}}')"
}

# ingest_kafka REP ROLE: HTTP ingest into a tributary on the real services.
ingest_kafka() {
  local rep=$1 role=$2 tag url out env
  tag="${PREFIX}_k${role}$rep"
  url=$("$BIN/benchctl" create-db --name "$tag" | jq -r .)
  mapfile -t env < <(env_for "$tag" "$url")
  start_tributary "kafka-$role-$rep" config/local.toml "$role" "${env[@]}"
  run_child "$WORK/out.json" - "$BIN/ingest" --url "$NODE_URL" --key "$KEY" \
    --stream clicks --events "$EVENTS" --batch "$BATCH" --concurrency "$CONCURRENCY" \
    --seed "$rep" --watch tributary="$NODE_PID" --watch kafka="$KAFKA_PID" \
    --watch ferretdb="$FERRET_PID"
  out=$(<"$WORK/out.json")
  stop_tributary
  record "kafka-$role" "$out"
}

# ingest_embedded REP ROLE: HTTP ingest into an embedded tributary in a fresh directory.
ingest_embedded() {
  local rep=$1 role=$2 dir out
  dir="$WORK/embedded-$role-$rep"
  mkdir -p "$dir"
  sed "s#data/demo/#$dir/#g" config/demo.toml >"$dir/config.toml"
  start_tributary "embedded-$role-$rep" "$dir/config.toml" "$role"
  run_child "$WORK/out.json" - "$BIN/ingest" --url "$NODE_URL" --key "$KEY" \
    --stream clicks --events "$EVENTS" --batch "$BATCH" --concurrency "$CONCURRENCY" \
    --seed "$rep" --watch tributary="$NODE_PID"
  out=$(<"$WORK/out.json")
  stop_tributary
  rm -rf "$dir"
  record "embedded-$role" "$out"
}

# pipeline REP MODE: the engine draining a pre-filled log.
pipeline() {
  local rep=$1 mode=$2 out
  run_child "$WORK/out.json" - "$BIN/pipeline" --mode "$mode" \
    --events "$PIPELINE_EVENTS" --checkpoint-interval-ms "$CHECKPOINT_MS" \
    --prefix "${PREFIX}_p$rep"
  out=$(<"$WORK/out.json")
  record "pipeline-$mode" "$out"
}

# ---------------------------------------------------------------- the pipeline suite

# baseline_pipeline: the `pipeline` binary of BASELINE_REV, built once into
# target/bench-baseline from a temporary worktree (removed right after), or BASELINE_BIN.
baseline_pipeline() {
  if [[ -n $BASELINE_BIN ]]; then
    [[ -x $BASELINE_BIN ]] || die "BENCH_BASELINE_BIN=$BASELINE_BIN is not executable"
    return 0
  fi
  WORKTREE="$WORK/baseline"
  log "building the pipeline binary of $BASELINE_REV (a worktree in $WORKTREE, $TARGET_DIR/bench-baseline)"
  git worktree add --detach "$WORKTREE" "$BASELINE_REV" >&2
  (cd "$WORKTREE" && CARGO_TARGET_DIR="$TARGET_DIR/bench-baseline" \
    cargo build --release -p tributary-bench --bin pipeline >&2)
  git worktree remove --force "$WORKTREE" >&2
  WORKTREE=""
  BASELINE_BIN="$TARGET_DIR/bench-baseline/release/pipeline"
}

# drain REP NAME TAG PARTITIONS BINARY [ARG...]: one pipeline drain, Kafka → PostgreSQL
# without the archive, its CPU measured from outside by `benchctl watch-drain` (with the
# Kafka broker's and all PostgreSQL processes' CPU over the same span).
drain() {
  local rep=$1 name=$2 tag=$3 partitions=$4 binary=$5
  shift 5
  run_child "$WORK/out.json" - "$BIN/benchctl" watch-drain \
    --watch kafka="$KAFKA_PID" --watch-command postgres -- \
    "$binary" --mode kafka --events "$PIPELINE_EVENTS" --partitions "$partitions" \
    --checkpoint-interval-ms "$CHECKPOINT_MS" --no-archive --prefix "${PREFIX}_$tag$rep" \
    --label "$name" "$@"
  record "$name" "$(<"$WORK/out.json")"
}

# drow LABEL NAME: a drain row of the pipeline suite.
drow() {
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" \
    "$(median "$2" .pipeline_events_per_sec)" "$(median "$2" .watched.cpu_s_per_million_events)" \
    "$(median "$2" '.cpu_s_per_million_events // "-"')" "$(median "$2" .watched.cores_busy)" \
    "$(median "$2" '.watched.processes.kafka_cpu_s // "-"')" \
    "$(median "$2" '.watched.processes.postgres_cpu_s // "-"')" \
    "$(runs "$2" .pipeline_events_per_sec)" "$(runs "$2" .watched.cpu_s_per_million_events)"
}

# rratio A B FILTER: the ratios A/B of FILTER within each repetition, in run order.
rratio() {
  jq -rs --arg a "$1" --arg b "$2" "
    [.[] | select(.name == \$a) | $3] as \$x | [.[] | select(.name == \$b) | $3] as \$y
    | [range(0; [(\$x | length), (\$y | length)] | min)
       | if \$y[.] == 0 then 0 else (\$x[.] / \$y[.] * 100 | round) / 100 end | tostring]
    | join(\" / \")" "$RAW"
}

# pratio LABEL A B: a ratio row: medians of A over B, CPU-s per 1M events and events/s,
# and the same ratio within each repetition.
pratio() {
  local ev cpu
  ev=$(ratio "$(median "$2" .pipeline_events_per_sec)" "$(median "$3" .pipeline_events_per_sec)")
  cpu=$(ratio "$(median "$2" .watched.cpu_s_per_million_events)" "$(median "$3" .watched.cpu_s_per_million_events)")
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$cpu" "$ev" \
    "$(rratio "$2" "$3" .watched.cpu_s_per_million_events)" "$(rratio "$2" "$3" .pipeline_events_per_sec)"
}

pipeline_suite() {
  if [[ -n $BASELINE_REV || -n $BASELINE_BIN ]]; then
    baseline_pipeline
  fi
  local rep baseline="${BASELINE_REV:-$BASELINE_BIN}" engine
  engine="$(git rev-parse --short HEAD)"
  if [[ -n $(git status --porcelain -- crates Cargo.toml Cargo.lock) ]]; then
    engine="$engine with uncommitted changes in crates/"
  fi
  for ((rep = 1; rep <= REPS; rep++)); do
    log "---- repetition $rep of $REPS"
    if [[ -n $BASELINE_BIN ]]; then
      drain "$rep" count-old o "$PARTITIONS" "$BASELINE_BIN"
    fi
    drain "$rep" count c "$PARTITIONS" "$BIN/pipeline" --workload count
    drain "$rep" aggregates a "$PARTITIONS" "$BIN/pipeline" --workload aggregates
    drain "$rep" yahoo y "$PARTITIONS" "$BIN/pipeline" --workload yahoo
    drain "$rep" yahoo-no-lookup n "$PARTITIONS" "$BIN/pipeline" --workload yahoo --no-lookup
    # One partition: one task on both engines, so the per-event cost compares without
    # the shards' parallelism.
    if [[ -n $BASELINE_BIN ]]; then
      drain "$rep" count-old-p1 q 1 "$BASELINE_BIN"
    fi
    drain "$rep" count-p1 d 1 "$BIN/pipeline" --workload count
  done
  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
  cat <<EOF
New engine: this checkout, $engine. Pipeline drain, Kafka ($PARTITIONS-partition topic unless marked, $PIPELINE_EVENTS events pre-filled) → PostgreSQL, no archive, checkpoint interval $CHECKPOINT_MS ms, $REPS runs each (interleaved), medians. CPU: the \`pipeline\` process's user + system time over the drain, read from outside (\`benchctl watch-drain\`), per million events; "in-process": the same read by the new binary itself. Cores busy: the whole machine (of $(nproc)) over the drain. Kafka broker and PostgreSQL (all its processes, anyone's): CPU seconds over the drain. Load average before/after: $LOAD_BEFORE / $LOAD_AFTER. Took $((SECONDS - STARTED)) s.

| pipeline drain | events/s | CPU-s per 1M events | in-process CPU-s per 1M | cores busy | Kafka CPU s | PostgreSQL CPU s | runs (events/s) | runs (CPU-s per 1M) |
|---|---:|---:|---:|---:|---:|---:|---|---|
EOF
  if [[ -n $BASELINE_BIN ]]; then
    drow "count per page, 1-min tumbling — previous engine ($baseline, one task)" count-old
  fi
  drow "count per page, 1-min tumbling — new engine (\`PipelineSpec::counting\`, one shard per partition)" count
  drow "filter + count/sum/avg/p95 per page, 1-min tumbling — new engine (one shard per partition)" aggregates
  drow "YSB: views per campaign (ad → campaign lookup), 10-s tumbling — new engine (repartitioned by campaign: 3 + 3 tasks)" yahoo
  drow "YSB without the lookup: views per ad, 10-s tumbling — new engine (repartitioned by ad)" yahoo-no-lookup
  if [[ -n $BASELINE_BIN ]]; then
    drow "count per page, **1-partition topic** — previous engine ($baseline, one task)" count-old-p1
  fi
  drow "count per page, **1-partition topic** — new engine (one shard: one task)" count-p1
  cat <<EOF

| ratio | CPU-s per 1M events (medians) | events/s (medians) | per repetition (CPU) | per repetition (events/s) |
|---|---:|---:|---|---|
EOF
  if [[ -n $BASELINE_BIN ]]; then
    pratio "count: new engine / previous engine" count count-old
    pratio "count, 1 partition (one task each): new engine / previous engine" count-p1 count-old-p1
  fi
  pratio "filter + 4 aggregates / count (new engine)" aggregates count
  pratio "YSB / count (new engine)" yahoo count
  pratio "YSB / YSB without the lookup" yahoo yahoo-no-lookup
  log "done in $((SECONDS - STARTED)) s"
}

# ---------------------------------------------------------------- the peers suite

PEERS_DIR="$ROOT/bench/peers"
PEER_JAVA_OPTS=${BENCH_PEER_JAVA_OPTS:--Xms2g -Xmx2g}
# Warnings and errors only; not the Flink metric registry's name collisions (the Kafka
# consumer's metrics, registered twice), nor each record a window drops as late (counted).
PEER_LOG_OPTS="-Dorg.slf4j.simpleLogger.defaultLogLevel=warn
  -Dorg.slf4j.simpleLogger.log.org.apache.flink.metrics=error
  -Dorg.slf4j.simpleLogger.log.org.apache.kafka.streams.kstream.internals=error"

# build_peers: bench/peers with Maven, unless its jar is newer than its sources.
build_peers() {
  command -v java >/dev/null || die "java (17+) is required for the peers suite"
  command -v mvn >/dev/null || die "mvn is required for the peers suite"
  local jar="$PEERS_DIR/target/tributary-bench-peers-0.1.0.jar"
  if [[ -f $jar && -f $PEERS_DIR/target/classpath.txt &&
    -z $(find "$PEERS_DIR/pom.xml" "$PEERS_DIR/src" -newer "$jar" -type f) ]]; then
    log "bench/peers is built"
  else
    log "building bench/peers (Maven)"
    (cd "$PEERS_DIR" && mvn -B -q package -DskipTests >&2)
  fi
  PEER_CP="$PEERS_DIR/target/classes:$(<"$PEERS_DIR/target/classpath.txt")"
}

# prefill REP WORKLOAD: fills a fresh topic with the workload's events; its description
# and ground truth go to the directory $PREFILLED ($WORK/prefill-WORKLOAD-REP).
prefill() {
  local rep=$1 workload=$2 dir="$WORK/prefill-$2-$1"
  run_child "$WORK/out.json" - "$BIN/pipeline" --mode kafka --workload "$workload" \
    --events "$PIPELINE_EVENTS" --partitions "$PARTITIONS" \
    --prefix "${PREFIX}_p${workload:0:1}$rep" --prefill-only "$dir" --label "prefill-$workload"
  record "prefill-$workload" "$(<"$WORK/out.json")"
  PREFILLED="$dir"
}

# check_windows NAME RESULTS TRUTH: records the JSON line of out.json as NAME, with
# whether every window's count equals the ground truth (and how many lines differ).
check_windows() {
  local name=$1 results=$2 truth=$3 differing
  differing=$(diff <(sort "$truth") <(sort "$results") | grep -c '^[<>]' || true)
  record "$name" "$(jq -c --argjson d "$differing" \
    '. + {windows_equal: ($d == 0), windows_differing: $d}' <"$WORK/out.json")"
}

# peer REP ENGINE WORKLOAD DIR: drains the pre-filled topic of DIR with a JVM peer
# (flink | kafka-streams), under `benchctl watch-drain`, and checks every window.
peer() {
  local rep=$1 engine=$2 workload=$3 dir=$4 class extra=()
  case $engine in
    flink) class=tributary.peers.FlinkPeer ;;
    kafka-streams)
      class=tributary.peers.KafkaStreamsPeer
      # No watermark in Kafka Streams: after YSB's repartition, a task's stream time runs
      # ahead of the slowest upstream task; a grace of the events' whole span keeps every
      # event (with 10 s, most are dropped as late: see bench/README.md).
      if [[ $workload == yahoo ]]; then extra=(--grace-ms 600000); fi
      ;;
    *) die "unknown peer $engine" ;;
  esac
  if [[ $workload == yahoo ]]; then extra+=(--ads "$dir/ads.csv"); fi
  rm -rf "$WORK/state"
  mkdir -p "$WORK/state"
  # shellcheck disable=SC2086 # the JVM options are words
  run_child "$WORK/out.json" - "$BIN/benchctl" watch-drain \
    --watch kafka="$KAFKA_PID" --watch-command postgres -- \
    java $PEER_JAVA_OPTS $PEER_LOG_OPTS -cp "$PEER_CP" "$class" \
    --brokers "$TRIBUTARY_KAFKA_BROKERS" --topic "$(jq -r .topic "$dir/prefill.json")" \
    --workload "$workload" --events "$PIPELINE_EVENTS" \
    --counted "$(jq -r .counted "$dir/prefill.json")" --parallelism 2 \
    --checkpoint-interval-ms "$CHECKPOINT_MS" --results "$WORK/results.tsv" \
    --state-dir "$WORK/state" --app-id "${PREFIX}_${engine:0:1}${workload:0:1}$rep" \
    --label "$engine-$workload" "${extra[@]}"
  check_windows "$engine-$workload" "$WORK/results.tsv" "$dir/truth.tsv"
  rm -rf "$WORK/state" "$WORK/results.tsv"
}

# tributary_from REP WORKLOAD DIR: Tributary's drain of the pre-filled topic (the binary
# checks every result row against the ground truth and fails on a difference).
tributary_from() {
  local rep=$1 workload=$2 dir=$3
  run_child "$WORK/out.json" - "$BIN/benchctl" watch-drain \
    --watch kafka="$KAFKA_PID" --watch-command postgres -- \
    "$BIN/pipeline" --mode kafka --workload "$workload" --events "$PIPELINE_EVENTS" \
    --partitions "$PARTITIONS" --checkpoint-interval-ms "$CHECKPOINT_MS" --no-archive \
    --prefix "${PREFIX}_t${workload:0:1}$rep" --from "$dir" --label "tributary-$workload"
  record "tributary-$workload" \
    "$(jq -c '. + {windows_equal: true, windows_differing: 0}' <"$WORK/out.json")"
}

# erow LABEL NAME: a row of the peers table.
erow() {
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" \
    "$(median "$2" .pipeline_events_per_sec)" "$(median "$2" .watched.cpu_s_per_million_events)" \
    "$(median "$2" '.watched.process_cpu_seconds // "-"')" \
    "$(median "$2" '.startup_seconds // "-"')" "$(median "$2" .watched.cores_busy)" \
    "$(median "$2" '.watched.processes.kafka_cpu_s // "-"')" \
    "$(median "$2" '.watched.processes.postgres_cpu_s // "-"')" \
    "$(jq -rs --arg n "$2" '[.[] | select(.name == $n)]
      | if length > 0 and all(.windows_equal) then "yes"
        else "**no** (\([.[] | .windows_differing | tostring] | join(" / ")) lines differ)" end' "$RAW")" \
    "$(runs "$2" .pipeline_events_per_sec)" "$(runs "$2" .watched.cpu_s_per_million_events)"
}

peers_suite() {
  build_peers
  local rep workload engines engine i n engine_rev flink_v ks_v
  engine_rev="$(git rev-parse --short HEAD)"
  if [[ -n $(git status --porcelain -- crates Cargo.toml Cargo.lock) ]]; then
    engine_rev="$engine_rev with uncommitted changes in crates/"
  fi
  for ((rep = 1; rep <= REPS; rep++)); do
    log "---- repetition $rep of $REPS"
    for workload in count yahoo; do
      prefill "$rep" "$workload"
      # The engines' order turns with each repetition, so that none always drains first.
      engines=(tributary flink kafka-streams)
      n=${#engines[@]}
      for ((i = 0; i < n; i++)); do
        engine=${engines[$(((i + rep - 1) % n))]}
        if [[ $engine == tributary ]]; then
          tributary_from "$rep" "$workload" "$PREFILLED"
        else
          peer "$rep" "$engine" "$workload" "$PREFILLED"
        fi
      done
    done
  done
  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
  flink_v=$(jq -rs '[.[] | select(.engine == "flink") | .version][0] // "?"' "$RAW")
  ks_v=$(jq -rs '[.[] | select(.engine == "kafka-streams") | .version][0] // "?"' "$RAW")
  cat <<EOF
Tributary: this checkout, $engine_rev. Apache Flink $flink_v: local MiniCluster, parallelism 2, exactly-once checkpoints every $CHECKPOINT_MS ms, RocksDB state backend with incremental checkpoints (the HashMap backend snapshots all the de-duplication state every second: 15.8k events/s at 117 CPU-s per 1M on the count drain, measured once), checkpoints on the local disk. Kafka Streams $ks_v: exactly_once_v2, 2 stream threads, commit interval $CHECKPOINT_MS ms, RocksDB stores. JVMs: \`$PEER_JAVA_OPTS\`, $(java -version 2>&1 | head -n 1). Each pipeline's $PIPELINE_EVENTS events are pre-filled once per repetition into a fresh $PARTITIONS-partition topic, which all three engines drain in turn (the order turning with the repetition); $REPS repetitions (interleaved), medians. events/s: events over the drain — Tributary: from the engine's start until its committed checkpoints cover every offset; Flink: from the first record read until the bounded job has finished (its final checkpoint included); Kafka Streams: from the first record read until the results hold every event (the commit after the last record). CPU-s per 1M events: the engine's process over that drain, read from outside (\`benchctl watch-drain\`). Process CPU s: the process's whole life (JVM start-up, job submission and shutdown included; Tributary: connecting, draining, checking the results). Start-up s: JVM start to the first record. Cores busy: the whole machine (of $(nproc)). Kafka broker and PostgreSQL (all its processes): CPU seconds over the drain. All windows equal: every (window, key) count of the engine equals the ground truth of the pre-fill, and so every other engine's. Load average before/after: $LOAD_BEFORE / $LOAD_AFTER. Took $((SECONDS - STARTED)) s.

| pipeline — engine | events/s | CPU-s per 1M events | process CPU s | start-up s | cores busy | Kafka CPU s | PostgreSQL CPU s | all windows equal | runs (events/s) | runs (CPU-s per 1M) |
|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|
EOF
  erow "count per page, 1-min tumbling — Tributary (one shard per partition → PostgreSQL)" tributary-count
  erow "count per page, 1-min tumbling — Flink (keyBy page, dedup, window)" flink-count
  erow "count per page, 1-min tumbling — Kafka Streams (groupByKey: no repartition)" kafka-streams-count
  erow "YSB: views per campaign, 10-s tumbling — Tributary (repartitioned: 3 + 3 tasks → PostgreSQL)" tributary-yahoo
  erow "YSB: views per campaign, 10-s tumbling — Flink (keyBy campaign)" flink-yahoo
  erow "YSB: views per campaign, 10-s tumbling — Kafka Streams (repartition topic, grace 10 min)" kafka-streams-yahoo
  cat <<EOF

| ratio | CPU-s per 1M events (medians) | events/s (medians) | per repetition (CPU) | per repetition (events/s) |
|---|---:|---:|---|---|
EOF
  pratio "count: Flink / Tributary" flink-count tributary-count
  pratio "count: Kafka Streams / Tributary" kafka-streams-count tributary-count
  pratio "YSB: Flink / Tributary" flink-yahoo tributary-yahoo
  pratio "YSB: Kafka Streams / Tributary" kafka-streams-yahoo tributary-yahoo
  log "done in $((SECONDS - STARTED)) s"
}

# ---------------------------------------------------------------- the scale suite

# scale_suite: one pipeline over 1, 2 and 3 `tributary run --role process` processes
# (`scale drain` on a pre-filled topic, `scale steady` under live load) and the recovery
# after a `kill -9` of one of two (`scale failover`); see bench/README.md.
scale_suite() {
  local rep dir n i procs counts one one_steady cpu name rev scale
  read -r -a counts <<<"$SCALE_PROCESSES"
  scale=("$BIN/scale" --tributary "$BIN/tributary" --work "$WORK" --kafka-pid "$KAFKA_PID"
    --session-timeout "$SCALE_SESSION_TIMEOUT")

  for ((rep = 1; rep <= REPS; rep++)); do
    log "---- repetition $rep of $REPS"
    dir="$WORK/prefill-$rep"
    run_child "$WORK/out.json" - "$BIN/pipeline" --mode kafka --workload count \
      --events "$PIPELINE_EVENTS" --partitions "$SCALE_PARTITIONS" --prefix "${PREFIX}_s$rep" \
      --prefill-only "$dir" --label prefill
    record prefill "$(<"$WORK/out.json")"
    n=${#counts[@]}
    for ((i = 0; i < n; i++)); do
      procs=${counts[$(((i + rep - 1) % n))]}
      run_child "$WORK/out.json" - "${scale[@]}" --prefix "${PREFIX}_s${rep}n$procs" \
        --checkpoint-interval-ms "$CHECKPOINT_MS" --label "drain-$procs" \
        drain --from "$dir" --processes "$procs"
      record "drain-$procs" "$(<"$WORK/out.json")"
    done
    # The topic of this repetition is drained: its disk space back before the next one.
    "$BIN/benchctl" cleanup --prefix "${PREFIX}_s$rep" >/dev/null
    for ((i = 0; i < n; i++)); do
      procs=${counts[$(((i + rep - 1) % n))]}
      run_child "$WORK/out.json" - "${scale[@]}" --prefix "${PREFIX}_l${rep}n$procs" \
        --checkpoint-interval-ms "$CHECKPOINT_MS" --label "steady-$procs" \
        steady --processes "$procs" --partitions "$SCALE_PARTITIONS" --rate "$SCALE_STEADY_RATE"
      record "steady-$procs" "$(<"$WORK/out.json")"
      "$BIN/benchctl" cleanup --prefix "${PREFIX}_l${rep}n$procs" >/dev/null
    done
    run_child "$WORK/out.json" - "${scale[@]}" --prefix "${PREFIX}_f$rep" \
      --checkpoint-interval-ms "$SCALE_FAILOVER_CHECKPOINT_MS" --label failover \
      failover --processes 2 --partitions "$SCALE_PARTITIONS" --rate "$SCALE_RATE"
    record failover "$(<"$WORK/out.json")"
    "$BIN/benchctl" cleanup --prefix "${PREFIX}_f$rep" >/dev/null
  done

  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
  rev="$(git rev-parse --short HEAD)"
  if [[ -n $(git status --porcelain -- crates Cargo.toml Cargo.lock) ]]; then
    rev="$rev with uncommitted changes in crates/"
  fi
  one=$(median drain-1 .cpu_s_per_million_events)

  cat <<EOF
Tributary: this checkout, $rev; \`tributary run --role process\` (release) processes. $PIPELINE_EVENTS click events pre-filled per repetition into a fresh $SCALE_PARTITIONS-partition topic; the count per page in 1-minute tumbling windows (one shard per partition, no raw-event archive), checkpoint every $CHECKPOINT_MS ms, into PostgreSQL; each drain with its own database and consumer group; $REPS repetitions (interleaved, the order of the drains turning), medians. events/s: events over the time from starting the processes until the committed checkpoints of every shard cover every offset (start-up, group joins and the rebalances while the others join included). CPU-s per 1M events: all the processes' CPU time up to then (from /proc), per million events. Balanced after: when every process ran its share of the shards (⌊$SCALE_PARTITIONS/N⌋ or ⌈$SCALE_PARTITIONS/N⌉, from their /metrics; "-": the drain was over first). Cores busy: the whole machine (of $(nproc)); Kafka broker and PostgreSQL (all its processes): CPU seconds over the drain. All windows equal: every (window, key) count equals the ground truth. Load average before/after: $LOAD_BEFORE / $LOAD_AFTER. Took $((SECONDS - STARTED)) s.

| processes | events/s | CPU-s per 1M events | vs 1 process (CPU) | balanced after s | shards per process | cores busy | Kafka CPU s | PostgreSQL CPU s | all windows equal | runs (events/s) | runs (CPU-s per 1M) | runs (balanced after s) |
|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|---|---|
EOF
  for procs in $(tr ' ' '\n' <<<"$SCALE_PROCESSES" | sort -n); do
    name="drain-$procs"
    cpu=$(median "$name" .cpu_s_per_million_events)
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$procs" \
      "$(median "$name" .events_per_sec)" "$cpu" "$(ratio "$cpu" "$one")" \
      "$(median "$name" '.balanced_after_s // "-"')" \
      "$(jq -rs --arg n "$name" '[.[] | select(.name == $n) | .tasks_per_process | map(tostring) | join("+")] | unique | join(", ")' "$RAW")" \
      "$(median "$name" .cores_busy)" "$(median "$name" '.kafka_cpu_s // "-"')" \
      "$(median "$name" .postgres_cpu_s)" \
      "$(jq -rs --arg n "$name" 'if all(.[] | select(.name == $n); .windows_equal) then "yes" else "**no**" end' "$RAW")" \
      "$(runs "$name" .events_per_sec)" "$(runs "$name" .cpu_s_per_million_events)" \
      "$(runs "$name" '.balanced_after_s // "-"')"
  done
  one_steady=$(median steady-1 .cpu_s_per_million_events)
  cat <<EOF

Steady state: N processes on a fresh $SCALE_PARTITIONS-partition topic fed live at $SCALE_STEADY_RATE events/s (current time, up to 2 s out of order) through the \`Log\` port, checkpoint every $CHECKPOINT_MS ms; once every process runs its share of the shards and every shard's lag has stayed under 1 s plus a checkpoint interval for 5 s, the processes' CPU time over 20 s per million events appended meanwhile. Max lag: the largest lag of a shard over those 20 s.

| processes | CPU-s per 1M events | vs 1 process | cores used | max lag s | shards per process | all windows equal | runs (CPU-s per 1M) |
|---:|---:|---:|---:|---:|---|---|---|
EOF
  for procs in $(tr ' ' '\n' <<<"$SCALE_PROCESSES" | sort -n); do
    name="steady-$procs"
    cpu=$(median "$name" .cpu_s_per_million_events)
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$procs" "$cpu" "$(ratio "$cpu" "$one_steady")" \
      "$(median "$name" .cores)" "$(median "$name" .max_lag_s)" \
      "$(jq -rs --arg n "$name" '[.[] | select(.name == $n) | .tasks_per_process | map(tostring) | join("+")] | unique | join(", ")' "$RAW")" \
      "$(jq -rs --arg n "$name" 'if all(.[] | select(.name == $n); .windows_equal) then "yes" else "**no**" end' "$RAW")" \
      "$(runs "$name" .cpu_s_per_million_events)"
  done
  cat <<EOF

Failover: 2 processes on a fresh $SCALE_PARTITIONS-partition topic, $SCALE_RATE events/s appended live (current time, up to 2 s out of order) through the \`Log\` port, checkpoint every $SCALE_FAILOVER_CHECKPOINT_MS ms, group session timeout $SCALE_SESSION_TIMEOUT. Once every shard's lag (the age of the oldest record its committed checkpoint has not covered) has stayed under 1 s for 10 s, the process owning the most shards is SIGKILLed; recovered: the time from the kill until the lag of each of its shards is under 1 s again. Restored: when the survivor logged "task restored from its last checkpoint" for them, after the kill. Then appending stops, and every result row is checked against the events appended.

| measurement | median | runs |
|---|---:|---|
| recovered: kill → every moved shard's lag under 1 s (s) | $(median failover .recovered_s) | $(runs failover .recovered_s) |
| the same, after the session timeout (s) | $(median failover .after_session_timeout_s) | $(runs failover .after_session_timeout_s) |
| peak lag of the moved shards (s) | $(median failover .peak_lag_s) | $(runs failover .peak_lag_s) |
| moved shards restored by the survivor, after the kill (s) | $(median failover '.restored_after_kill_s | max') | $(runs failover '.restored_after_kill_s | map(tostring) | join(", ")') |
| their time without an owner, \`unowned_ms\` (ms) | $(median failover '.unowned_ms | max') | $(runs failover '.unowned_ms | map(tostring) | join(", ")') |
| moved shards (of $SCALE_PARTITIONS) | $(median failover '.victim_shards | length') | $(runs failover '.victim_shards | map(tostring) | join(",")') |
| every event appended counted once | $(jq -rs 'if all(.[] | select(.name == "failover"); .windows_equal) then "yes" else "**no**" end' "$RAW") | $(runs failover .events) events |
EOF
  log "done in $((SECONDS - STARTED)) s"
}

# gateway_run REP VARIANT: one gateway (VARIANT: off | on | on-exact | on-nocache, see the header) on
# fresh names, both queries under the `gateway` load generator.
gateway_run() {
  local rep=$1 limits=$2 tag url out query path key=$KEY
  local -a limit_env env
  tag="${PREFIX}_g${limits//-/}$rep"
  url=$("$BIN/benchctl" create-db --name "$tag" | jq -r .)
  if [[ $limits == off ]]; then
    limit_env=(TRIBUTARY__RATE_LIMIT__ENABLED=false 'TRIBUTARY__AUTH__ANONYMOUS_SCOPES=["read"]')
    key=""
  else
    limit_env=(TRIBUTARY__RATE_LIMIT__ENABLED=true TRIBUTARY__RATE_LIMIT__BACKEND=redis
      TRIBUTARY__RATE_LIMIT__READ__RATE=1000000 TRIBUTARY__RATE_LIMIT__READ__BURST=1000000
      TRIBUTARY__RATE_LIMIT__ADDRESS__RATE=1000000 TRIBUTARY__RATE_LIMIT__ADDRESS__BURST=1000000)
  fi
  if [[ $limits == on-nocache ]]; then
    limit_env+=(TRIBUTARY__HTTP__RESULTS_CACHE_TTL=0s)
  fi
  if [[ $limits == on-exact ]]; then
    limit_env+=(TRIBUTARY__RATE_LIMIT__SYNC_INTERVAL=0s)
  fi
  mapfile -t env < <(env_for "$tag" "$url")
  start_tributary "gateway-$limits-$rep" config/local.toml gateway "${env[@]}" "${limit_env[@]}"
  for query in results pipelines; do
    if [[ $query == results ]]; then
      path="/v1/pipelines/clicks_per_page/results?limit=10"
    else
      path="/v1/pipelines"
    fi
    run_child "$WORK/out.json" - "$BIN/gateway" --url "$NODE_URL" --key "$key" --path "$path" \
      --concurrency "$GATEWAY_CONCURRENCY" --seconds "$GATEWAY_SECONDS" --rate "$GATEWAY_RATE" \
      --label "$limits" --watch tributary="$NODE_PID"
    out=$(<"$WORK/out.json")
    record "gateway-$query-$limits" "$out"
  done
  stop_tributary
}

# gateway_suite: the cost of authentication and the rate limit on two queries, and what
# the results cache saves; see the header.
gateway_suite() {
  local rep query limits name off on exact nocache
  for ((rep = 1; rep <= REPS; rep++)); do
    log "---- repetition $rep of $REPS"
    gateway_run "$rep" off
    gateway_run "$rep" on
    gateway_run "$rep" on-exact
    gateway_run "$rep" on-nocache
  done
  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
  cat <<EOF
Gateway queries, \`tributary run --role gateway\` (config/local.toml: PostgreSQL, Redis), $REPS runs each (interleaved: off, on, on-exact, on-nocache), medians. off: no credential (\`[auth] anonymous_scopes = ["read"]\`) and no rate limit; on: API key and the Redis rate limit (synced every 50 ms, the default); on-exact: as on, with \`[rate_limit] sync_interval = "0s"\` (a Redis round trip per check); on-nocache: as on, with \`results_cache_ttl = "0s"\`. Closed loop: $GATEWAY_CONCURRENCY connections for $GATEWAY_SECONDS s; open loop: $GATEWAY_RATE requests/s for $GATEWAY_SECONDS s (latency from when each request was due). Load generator and gateway on the same $(nproc)-core machine. Load average before/after: $LOAD_BEFORE / $LOAD_AFTER. Took $((SECONDS - STARTED)) s.

| query | auth and rate limit | closed loop req/s | closed p99 ms | open loop req/s | open p50 ms | open p99 ms | open non-200 | runs (closed req/s) | runs (open p99 ms) |
|---|---|---:|---:|---:|---:|---:|---:|---|---|
EOF
  for query in results pipelines; do
    for limits in off on on-exact on-nocache; do
      name="gateway-$query-$limits"
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$query" "$limits" \
        "$(median "$name" .closed.requests_per_sec)" "$(median "$name" .closed.latency_ms.p99)" \
        "$(median "$name" .open.requests_per_sec)" "$(median "$name" .open.latency_ms.p50)" \
        "$(median "$name" .open.latency_ms.p99)" "$(median "$name" '[.open.errors[]] | add // 0')" \
        "$(runs "$name" .closed.requests_per_sec)" \
        "$(runs "$name" .open.latency_ms.p99)"
    done
  done
  cat <<EOF

| ratio (medians, closed loop req/s) | on / off | on / on-exact | on / on-nocache |
|---|---:|---:|---:|
EOF
  for query in results pipelines; do
    off=$(median "gateway-$query-off" .closed.requests_per_sec)
    on=$(median "gateway-$query-on" .closed.requests_per_sec)
    exact=$(median "gateway-$query-on-exact" .closed.requests_per_sec)
    nocache=$(median "gateway-$query-on-nocache" .closed.requests_per_sec)
    printf '| %s | %s | %s | %s |\n' "$query" "$(ratio "$on" "$off")" "$(ratio "$on" "$exact")" \
      "$(ratio "$on" "$nocache")"
  done
  log "done in $((SECONDS - STARTED)) s"
}

if [[ $SUITE == gateway ]]; then
  gateway_suite
  exit 0
fi

if [[ $SUITE == scale ]]; then
  scale_suite
  exit 0
fi

if [[ $SUITE == peers ]]; then
  peers_suite
  exit 0
fi

if [[ $SUITE == pipelines ]]; then
  pipeline_suite
  exit 0
fi

# ---------------------------------------------------------------- the run

RECORD_BYTES=$("$BIN/ingest" --key x --events 1000 --sizes-only | jq -r .log_record_bytes_mean)
log "Tributary writes log records of about $RECORD_BYTES bytes for these events"

for ((rep = 1; rep <= REPS; rep++)); do
  log "---- repetition $rep of $REPS"
  baseline "$rep" 200 raw-200
  baseline "$rep" "$RECORD_BYTES" raw-rec
  baseline "$rep" "$RECORD_BYTES" raw-rec-1mb batch.size=1000000
  ingest_kafka "$rep" all
  ingest_kafka "$rep" ingest
  ingest_embedded "$rep" all
  ingest_embedded "$rep" ingest
  pipeline "$rep" embedded
  pipeline "$rep" kafka
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- the table

RAW200=$(median raw-200 .events_per_sec)
RAWREC=$(median raw-rec .events_per_sec)
RAWREC1MB=$(median raw-rec-1mb .events_per_sec)
KALL=$(median kafka-all .events_per_sec)
KING=$(median kafka-ingest .events_per_sec)

cat <<EOF
$EVENTS events per ingest run, $PIPELINE_EVENTS per pipeline drain (checkpoint interval $CHECKPOINT_MS ms), $REPS runs each (interleaved), medians. HTTP: JSON arrays of $BATCH events, $CONCURRENCY requests in flight. Kafka topics: $PARTITIONS partitions. Load average before/after: $LOAD_BEFORE / $LOAD_AFTER. Took $((SECONDS - STARTED)) s.

| measurement | events/s | p50 ms | p99 ms | runs (events/s) |
|---|---:|---:|---:|---|
EOF
row "raw Kafka: ProducerPerformance, 200 B records, acks=all, idempotent" raw-200
row "raw Kafka: ProducerPerformance, $RECORD_BYTES B records (Tributary's record size)" raw-rec
row "raw Kafka: ProducerPerformance, $RECORD_BYTES B records, batch.size=1000000 (librdkafka's default)" raw-rec-1mb
row "Tributary HTTP ingest → Kafka, \`--role all\`" kafka-all
row "Tributary HTTP ingest → Kafka, \`--role ingest\`" kafka-ingest
row "Tributary HTTP ingest → embedded (redb), \`--role all\`" embedded-all
row "Tributary HTTP ingest → embedded (redb), \`--role ingest\`" embedded-ingest
prow "pipeline drain, embedded (redb → SQLite): window pipeline" pipeline-embedded pipeline_events_per_sec
prow "pipeline drain, embedded: events dropped as late (count, not events/s)" pipeline-embedded late_events
prow "pipeline drain, embedded: raw-event archive (→ SQLite)" pipeline-embedded archive_events_per_sec
prow "pipeline drain, embedded: \`Log::append\` of 5000 events per call (redb)" pipeline-embedded append_events_per_sec
prow "pipeline drain, Kafka → PostgreSQL: window pipeline" pipeline-kafka pipeline_events_per_sec
prow "pipeline drain, Kafka: events dropped as late (count, not events/s)" pipeline-kafka late_events
prow "pipeline drain, Kafka: raw-event archive (→ MongoDB/FerretDB)" pipeline-kafka archive_events_per_sec
prow "pipeline drain, Kafka: \`Log::append\` of 5000 events per call" pipeline-kafka append_events_per_sec
cat <<EOF

| ratio (medians) | value |
|---|---:|
| Tributary → Kafka \`--role all\` / raw Kafka 200 B | $(ratio "$KALL" "$RAW200") |
| Tributary → Kafka \`--role all\` / raw Kafka $RECORD_BYTES B | $(ratio "$KALL" "$RAWREC") |
| Tributary → Kafka \`--role ingest\` / raw Kafka 200 B | $(ratio "$KING" "$RAW200") |
| Tributary → Kafka \`--role ingest\` / raw Kafka $RECORD_BYTES B | $(ratio "$KING" "$RAWREC") |
| Tributary → Kafka \`--role all\` / raw Kafka $RECORD_BYTES B, 1 MB batches | $(ratio "$KALL" "$RAWREC1MB") |
| Tributary → Kafka \`--role ingest\` / raw Kafka $RECORD_BYTES B, 1 MB batches | $(ratio "$KING" "$RAWREC1MB") |

Latencies: Tributary rows are per HTTP request ($BATCH events, from send to the 202 answer); raw Kafka rows are ProducerPerformance's per-record send-to-acknowledgement latency.

CPU during the timed phase of the HTTP ingest runs (medians): cores the whole machine kept busy (of $(nproc)), and CPU seconds used by each process.

| ingest run | cores busy | tributary CPU s | Kafka broker CPU s | FerretDB CPU s | load generator CPU s | wall s |
|---|---:|---:|---:|---:|---:|---:|
EOF
for name in kafka-all kafka-ingest embedded-all embedded-ingest; do
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(median "$name" .cpu.cores_busy)" \
    "$(median "$name" .cpu.processes.tributary_cpu_s)" "$(median "$name" '.cpu.processes.kafka_cpu_s // "-"')" \
    "$(median "$name" '.cpu.processes.ferretdb_cpu_s // "-"')" "$(median "$name" .cpu.processes.client_cpu_s)" \
    "$(median "$name" .seconds)"
done
log "done in $((SECONDS - STARTED)) s"
