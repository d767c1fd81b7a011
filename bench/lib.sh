# shellcheck shell=bash
# Functions the bench scripts share (bench/run.sh, bench/sources.sh), sourced by them. They
# read the scripts' variables when called: BIN (the release binaries), KEY (the API key the
# nodes accept), WORK (a scratch directory), RAW (the measurements, one JSON line each),
# NODE_PID and NODE_URL (the running node), and the services' TRIBUTARY_* addresses.

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# env_for TAG DB-URL: the environment overrides giving a node fresh names on the services
# (topics, database, document database, cache keys), one VAR=VALUE per line.
env_for() {
  printf '%s\n' \
    "TRIBUTARY__LOG__BROKERS=$TRIBUTARY_KAFKA_BROKERS" \
    "TRIBUTARY__LOG__TOPIC_PREFIX=$1." \
    "TRIBUTARY__ANALYTICS__URL=$2" \
    "TRIBUTARY__DOCUMENTS__URL=$TRIBUTARY_MONGODB_URL" \
    "TRIBUTARY__DOCUMENTS__DATABASE=$1" \
    "TRIBUTARY__CACHE__URL=$TRIBUTARY_REDIS_URL" \
    "TRIBUTARY__CACHE__KEY_PREFIX=$1:"
}

# start_tributary NAME CONFIG ROLE [VAR=VALUE...]: starts `tributary run --role ROLE` in
# the background with a free port and the bench API key; waits until /readyz says 200.
start_tributary() {
  local name=$1 config=$2 role=$3 port i
  shift 3
  port=$("$BIN/benchctl" free-port | jq -r .)
  env "$@" TRIBUTARY_BOOTSTRAP_API_KEY="$KEY" TRIBUTARY__HTTP__LISTEN="127.0.0.1:$port" \
    "$BIN/tributary" run --config "$config" --role "$role" --log-format json \
    </dev/null >"$WORK/$name.log" 2>&1 &
  NODE_PID=$!
  NODE_URL="http://127.0.0.1:$port"
  for ((i = 0; i < 300; i++)); do
    if [[ $(curl -s -o /dev/null -w '%{http_code}' "$NODE_URL/readyz" || true) == 200 ]]; then
      return 0
    fi
    kill -0 "$NODE_PID" 2>/dev/null || {
      tail -n 20 "$WORK/$name.log" >&2
      NODE_PID=""
      die "tributary ($name) exited during startup"
    }
    sleep 0.2
  done
  tail -n 20 "$WORK/$name.log" >&2
  die "tributary ($name) not ready in 60 s"
}

# stop_tributary: SIGTERM (a last checkpoint), then SIGKILL after 60 s.
stop_tributary() {
  local pid=$NODE_PID i
  NODE_PID=""
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "tributary (pid $pid) did not stop in 60 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# record NAME JSON: keeps one measurement.
record() {
  jq -c --arg name "$1" '. + {name: $name}' <<<"$2" >>"$RAW"
  log "$1: $(jq -c 'del(.name)' <<<"$2")"
}

# median NAME FILTER: the median of FILTER over the runs of NAME.
median() {
  jq -rs --arg n "$1" "[.[] | select(.name == \$n) | $2] | sort | .[(length - 1) / 2 | floor]" "$RAW"
}

# runs NAME FILTER: every run's value, in run order.
runs() {
  jq -rs --arg n "$1" "[.[] | select(.name == \$n) | $2 | tostring] | join(\" / \")" "$RAW"
}

# ratio A B: A / B to two decimals (0 when B is 0).
ratio() { jq -n --argjson a "$1" --argjson b "$2" 'if $b == 0 then 0 else ($a / $b * 100 | round) / 100 end'; }
