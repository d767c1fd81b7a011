#!/usr/bin/env bash
# Local test services for Tributary, on loopback only:
#   PostgreSQL 127.0.0.1:54329, Redis 127.0.0.1:63799,
#   Kafka (single KRaft broker+controller) 127.0.0.1:19092 (controller 19093),
#   FerretDB (MongoDB wire protocol, PostgreSQL backend) 127.0.0.1:27018,
#   HAProxy (deploy/haproxy/haproxy.cfg) 127.0.0.1:18080 in front of the Tributary nodes
#   that tests start on 127.0.0.1:18081 and :18082 (stats on 127.0.0.1:18089).
#   Prometheus and promtool (Debian package; installed only, never started as a service:
#   the metrics test starts its own on a free port).
#   Chromium (Debian package; installed only: the live page test runs it headless).
#   Mosquitto (MQTT broker, Debian package; our own instance, not the system service)
#   127.0.0.1:18830, and a second instance requiring a user name and password on
#   127.0.0.1:18831 (plain TCP) and 127.0.0.1:18832 (TLS, a certificate signed by a test CA
#   made here with openssl); mosquitto_pub/mosquitto_sub (Debian's mosquitto-clients).
#   OpenSearch 2.19 (single node, assembled from Maven Central by scripts/opensearch.sh)
#   127.0.0.1:19200, and Debian's rsyslog with omelasticsearch (installed only: the log
#   shipping test runs its own instance through scripts/log-shipper.sh).
#   An OpenTelemetry Collector (deploy/otelcol/, built from the Go module proxy by
#   scripts/otelcol.sh): OTLP/HTTP on 127.0.0.1:14318, the traces it receives written as
#   JSON lines to a file (TRIBUTARY_OTLP_TRACES_FILE).
#
# Usage: scripts/services.sh up|down|status|env|kafka-tool MAIN-CLASS [ARGS...]
#        scripts/services.sh kafka-instance DIR PORT CONTROLLER-PORT   (a private broker)
#   eval "$(scripts/services.sh up)"   # start what is not running, export the addresses
#
# Progress goes to stderr; only `export` lines go to stdout.
# State (data, logs, pid files, cached jars and binaries):
#   ${TRIBUTARY_SERVICES_DIR:-$HOME/.cache/tributary/services}
# Reset: scripts/services.sh down && rm -rf "$STATE"
# See docs/services.md.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${TRIBUTARY_SERVICES_DIR:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache/tributary/services}"
LOGS="$STATE/logs"

HOST=127.0.0.1
PG_PORT=54329
REDIS_PORT=63799
KAFKA_PORT=19092
KAFKA_CONTROLLER_PORT=19093
FERRET_PORT=27018
HAPROXY_PORT=18080
HAPROXY_NODE_PORTS=(18081 18082)   # deploy/haproxy/haproxy.cfg has two servers
HAPROXY_STATS_PORT=18089
MQTT_PORT=18830
MQTT_AUTH_PORT=18831
MQTT_TLS_PORT=18832
MQTT_USER=tributary
MQTT_PASSWORD=tributary-mqtt-test

KAFKA_VERSION=4.4.0        # keep in sync with scripts/kafka/pom.xml
FERRETDB_VERSION=v1.24.2

PGDATA="$STATE/postgres/data"
PG_SOCKET_DIR="$STATE/postgres/run"
KAFKA_DIR="$STATE/kafka"
KAFKA_LIBS="$STATE/kafka-libs"
FERRET_DIR="$STATE/ferretdb"
FERRET_BIN="$STATE/bin/ferretdb"
REDIS_DIR="$STATE/redis"
HAPROXY_DIR="$STATE/haproxy"
HAPROXY_CFG="$(dirname "$SCRIPT_DIR")/deploy/haproxy/haproxy.cfg"
MQTT_DIR="$STATE/mosquitto"
MQTT_SECURE_DIR="$STATE/mosquitto-secure"

export DEBIAN_FRONTEND=noninteractive

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

print_env() {
  cat <<EOF
export TRIBUTARY_KAFKA_BROKERS=$HOST:$KAFKA_PORT
export TRIBUTARY_POSTGRES_URL=postgres://tributary:tributary@$HOST:$PG_PORT/tributary
export TRIBUTARY_MONGODB_URL=mongodb://$HOST:$FERRET_PORT/
export TRIBUTARY_REDIS_URL=redis://$HOST:$REDIS_PORT/
export TRIBUTARY_HAPROXY_URL=http://$HOST:$HAPROXY_PORT
export TRIBUTARY_HAPROXY_NODES=$HOST:${HAPROXY_NODE_PORTS[0]},$HOST:${HAPROXY_NODE_PORTS[1]}
export TRIBUTARY_HAPROXY_STATS_URL=http://$HOST:$HAPROXY_STATS_PORT/
export TRIBUTARY_MQTT_URL=mqtt://$HOST:$MQTT_PORT
export TRIBUTARY_MQTT_AUTH_URL=mqtt://$HOST:$MQTT_AUTH_PORT
export TRIBUTARY_MQTT_TLS_URL=mqtts://$HOST:$MQTT_TLS_PORT
export TRIBUTARY_MQTT_CA_FILE=$MQTT_SECURE_DIR/ca.pem
export TRIBUTARY_MQTT_USERNAME=$MQTT_USER
export TRIBUTARY_MQTT_PASSWORD=$MQTT_PASSWORD
EOF
  "$SCRIPT_DIR/opensearch.sh" env
  "$SCRIPT_DIR/otelcol.sh" env
}

# ---------------------------------------------------------------- helpers

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# wait_for NAME SECONDS COMMAND...: retry COMMAND every 0.2 s.
wait_for() {
  local name=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}

# wait_started NAME SECONDS PIDFILE LOGFILE COMMAND...: retry COMMAND every 0.2 s until it
# succeeds; fail with the tail of LOGFILE as soon as the process of PIDFILE is gone.
wait_started() {
  local name=$1 secs=$2 pidfile=$3 logfile=$4 i
  shift 4
  for ((i = 0; i < secs * 5; i++)); do
    "$@" && return 0
    pid_alive "$pidfile" || {
      tail -n 30 "$logfile" >&2
      die "$name exited during startup"
    }
    sleep 0.2
  done
  die "$name did not start in $secs s (see $logfile)"
}

# pid_alive PIDFILE [EXPECTED-CMDLINE-SUBSTRING]
pid_alive() {
  local pidfile=$1 want=${2:-} pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -n $want ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$want" || return 1
  fi
}

# stop_pid NAME PIDFILE CMDLINE-SUBSTRING: TERM, wait up to 30 s, then KILL.
stop_pid() {
  local name=$1 pidfile=$2 want=$3 pid i
  if ! pid_alive "$pidfile" "$want"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(<"$pidfile")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop in 30 s, killing pid $pid"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pidfile"
}

APT_UPDATED=0
# apt_install PKG...: install those of PKG that are not installed yet.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  local sudo=()
  [[ $EUID -eq 0 ]] || sudo=(sudo)
  if ((APT_UPDATED == 0)); then
    log "apt-get update"
    "${sudo[@]}" apt-get update -qq >&2
    APT_UPDATED=1
  fi
  log "apt-get install ${missing[*]}"
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# ---------------------------------------------------------------- PostgreSQL

pg_bin_dir() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x $d/initdb ]] || continue
    if [[ -z $best ]] || [[ $(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -n 1) == "$d" ]]; then
      best=$d
    fi
  done
  [[ -n $best ]] && printf '%s\n' "$best"
}

PG_BIN=""
PG_RUN=()   # prefix to run server commands as the non-root owner of PGDATA

pg_prepare() {
  if [[ -z $(pg_bin_dir) ]] || ! command -v psql >/dev/null || ! command -v pg_isready >/dev/null; then
    apt_install postgresql postgresql-client
  fi
  PG_BIN=$(pg_bin_dir) || die "no PostgreSQL server binaries under /usr/lib/postgresql"
  if [[ $EUID -eq 0 ]]; then
    # PostgreSQL refuses to run as root: run it as the Debian `postgres` user.
    id postgres >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
    PG_RUN=(runuser -u postgres --)
  fi
}

pg_running() { pg_isready -q -h "$HOST" -p "$PG_PORT" -t 1 >/dev/null 2>&1; }

pg_psql() { psql -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres "$@"; }

postgres_up() {
  if pg_running; then
    log "postgres: already running on $HOST:$PG_PORT"
    return 0
  fi
  pg_prepare
  mkdir -p "$STATE/postgres" "$PG_SOCKET_DIR" "$LOGS"
  if [[ $EUID -eq 0 ]]; then
    chown postgres: "$STATE/postgres" "$PG_SOCKET_DIR"
    touch "$LOGS/postgres.log"
    chown postgres: "$LOGS/postgres.log"
    # The postgres user must be able to reach the state dir (e.g. under /root, mode 700):
    # grant search-only (x) permission on the ancestors that lack it.
    local p="" comp comps
    IFS=/ read -ra comps <<<"${STATE#/}"
    for comp in "${comps[@]}"; do
      [[ -n $comp ]] || continue
      p="$p/$comp"
      if ! runuser -u postgres -- test -x "$p/." 2>/dev/null; then
        log "postgres: chmod o+x $p (so the postgres user can reach the state dir)"
        chmod o+x "$p"
      fi
    done
  fi
  if [[ ! -s $PGDATA/PG_VERSION ]]; then
    log "postgres: initdb $PGDATA"
    rm -rf "$PGDATA"
    local pwfile
    pwfile=$(mktemp)
    echo postgres >"$pwfile"
    chmod 644 "$pwfile"
    "${PG_RUN[@]}" "$PG_BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$LOGS/initdb.log" 2>&1 \
      || { rm -f "$pwfile"; cat "$LOGS/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
    "${PG_RUN[@]}" tee -a "$PGDATA/postgresql.conf" >/dev/null <<EOF

# --- tributary local test settings ---
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
max_connections = 300
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = replica
max_wal_senders = 4
EOF
  fi
  log "postgres: starting on $HOST:$PG_PORT"
  # Retried: after an unclean stop (kill -9) the old server's children may hold the
  # shared memory for a moment, and the new server refuses to start until they are gone.
  local try
  for try in 1 2 3 4 5; do
    "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$LOGS/postgres.log" -w -t 60 start \
      </dev/null >&2 && break
    ((try < 5)) || { tail -n 30 "$LOGS/postgres.log" >&2; die "postgres did not start"; }
    log "postgres: start failed, retrying in 2 s"
    sleep 2
  done
  wait_for postgres 30 pg_running || die "postgres not ready (see $LOGS/postgres.log)"
  pg_psql -d postgres <<'EOF' >&2
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tributary') THEN
    CREATE ROLE tributary LOGIN SUPERUSER PASSWORD 'tributary';
  END IF;
END $$;
SELECT 'CREATE DATABASE tributary OWNER tributary'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'tributary') \gexec
SELECT 'CREATE DATABASE ferretdb OWNER tributary'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ferretdb') \gexec
EOF
}

postgres_down() {
  if [[ -s $PGDATA/postmaster.pid ]]; then
    pg_prepare
    log "postgres: stopping"
    "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop </dev/null >&2 || true
  fi
}

# ---------------------------------------------------------------- Redis

redis_running() { [[ $(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

redis_up() {
  if command -v redis-cli >/dev/null && redis_running; then
    log "redis: already running on $HOST:$REDIS_PORT"
    return 0
  fi
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt_install redis-server redis-tools
  fi
  mkdir -p "$REDIS_DIR" "$LOGS"
  log "redis: starting on $HOST:$REDIS_PORT"
  redis-server --port "$REDIS_PORT" --bind "$HOST" --save "" --appendonly no \
    --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --logfile "$LOGS/redis.log" \
    --dir "$REDIS_DIR" </dev/null >/dev/null 2>&1
  wait_for redis 30 redis_running || { tail -n 20 "$LOGS/redis.log" >&2; die "redis did not start"; }
}

redis_down() {
  if command -v redis-cli >/dev/null && redis_running; then
    log "redis: stopping"
    redis-cli -h "$HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    wait_for redis-stop 10 bash -c "! (exec 3<>/dev/tcp/$HOST/$REDIS_PORT)" || true
  fi
  stop_pid redis "$REDIS_DIR/redis.pid" redis-server
}

# ---------------------------------------------------------------- Kafka

java_ready() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
}

kafka_libs() {
  local stamp
  stamp=$(sha256sum "$SCRIPT_DIR/kafka/pom.xml" | cut -d' ' -f1)
  if [[ -f $KAFKA_LIBS/.stamp && $(<"$KAFKA_LIBS/.stamp") == "$stamp" ]]; then
    return 0
  fi
  java_ready
  log "kafka: resolving Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS.new"
  mvn -q -B -Dstyle.color=never -f "$SCRIPT_DIR/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.new" </dev/null 2>&1 \
    | sed 's/\x1b\[[0-9;]*m//g' >&2   # Debian's Maven 3.8 prints colour codes even with -B
  printf '%s\n' "$stamp" >"$KAFKA_LIBS.new/.stamp"
  rm -rf "$KAFKA_LIBS"
  mv "$KAFKA_LIBS.new" "$KAFKA_LIBS"
}

# kafka_java MAINCLASS ARGS...: run a Kafka tool class (logs WARN+ to stderr).
kafka_java() {
  java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2-tools.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}

# kafka_properties DIR PORT CONTROLLER-PORT: a single combined KRaft broker+controller
# listening on PORT (and CONTROLLER-PORT) with its data in DIR/data, on stdout.
kafka_properties() {
  local dir=$1 port=$2 controller_port=$3
  cat <<EOF
# Generated by scripts/services.sh: single combined KRaft broker+controller for tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$controller_port
listeners=PLAINTEXT://$HOST:$port,CONTROLLER://$HOST:$controller_port
advertised.listeners=PLAINTEXT://$HOST:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.segment.bytes=67108864
EOF
}

# kafka_log4j LOGFILE: the broker's logging config, on stdout.
kafka_log4j() {
  local logfile=$1
  cat <<EOF
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $logfile
appender.file.filePattern = $logfile.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
EOF
}

kafka_config() {
  mkdir -p "$KAFKA_DIR/data" "$LOGS"
  kafka_properties "$KAFKA_DIR" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" >"$KAFKA_DIR/server.properties"
  kafka_log4j "$LOGS/kafka.log" >"$KAFKA_DIR/log4j2.properties"
  kafka_config_tools
}

# kafka_instance DIR PORT CONTROLLER-PORT: runs a private broker in the foreground, with
# its data, config and log in DIR (formatted at the first run), for tests that kill and
# restart a broker without touching the shared one. The script execs the JVM: the
# caller's child is the broker itself.
kafka_instance() {
  local dir=$1 port=$2 controller_port=$3
  java_ready
  kafka_libs
  kafka_config_tools
  mkdir -p "$dir/data"
  kafka_properties "$dir" "$port" "$controller_port" >"$dir/server.properties"
  kafka_log4j "$dir/kafka.log" >"$dir/log4j2.properties"
  if [[ ! -s $dir/data/meta.properties ]]; then
    # A cluster id is 16 random bytes in URL-safe base64, without padding.
    local cluster_id
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    kafka_java kafka.tools.StorageTool format --ignore-formatted \
      -t "$cluster_id" -c "$dir/server.properties" </dev/null >&2
  fi
  exec java -Xms128m -Xmx384m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -Dkafka.logs.dir="$dir" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties"
}

kafka_config_tools() {
  [[ -s $KAFKA_DIR/log4j2-tools.properties ]] && return 0
  mkdir -p "$KAFKA_DIR"
  cat >"$KAFKA_DIR/log4j2-tools.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = err
EOF
}

kafka_running() { port_open "$KAFKA_PORT"; }

kafka_up() {
  if kafka_running; then
    log "kafka: already running on $HOST:$KAFKA_PORT"
    return 0
  fi
  java_ready
  kafka_libs
  kafka_config
  if [[ ! -s $KAFKA_DIR/data/meta.properties ]]; then
    local cluster_id
    if [[ -s $KAFKA_DIR/cluster-id ]]; then
      cluster_id=$(<"$KAFKA_DIR/cluster-id")
    else
      cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid </dev/null | tail -n 1)
      printf '%s\n' "$cluster_id" >"$KAFKA_DIR/cluster-id"
    fi
    log "kafka: formatting storage (cluster id $cluster_id)"
    kafka_java kafka.tools.StorageTool format --ignore-formatted \
      -t "$cluster_id" -c "$KAFKA_DIR/server.properties" </dev/null >&2
  fi
  log "kafka: starting broker on $HOST:$KAFKA_PORT"
  nohup setsid java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
    -Dkafka.logs.dir="$LOGS" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
    </dev/null >"$LOGS/kafka.out" 2>&1 &
  echo $! >"$KAFKA_DIR/kafka.pid"
  local i
  for ((i = 0; i < 300; i++)); do
    kafka_running && break
    pid_alive "$KAFKA_DIR/kafka.pid" || {
      tail -n 30 "$LOGS/kafka.out" "$LOGS/kafka.log" >&2 2>/dev/null || true
      die "kafka exited during startup (see $LOGS/kafka.log)"
    }
    sleep 0.2
  done
  kafka_running || die "kafka did not open $HOST:$KAFKA_PORT in 60 s (see $LOGS/kafka.log)"
  # The port opens before the broker is fully usable: wait for a metadata round trip.
  wait_for kafka-metadata 60 kafka_java org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$HOST:$KAFKA_PORT" --list \
    || die "kafka does not answer metadata requests (see $LOGS/kafka.log)"
}

kafka_down() {
  stop_pid kafka "$KAFKA_DIR/kafka.pid" kafka.Kafka
}

# ---------------------------------------------------------------- FerretDB

ferretdb_build() {
  local have=""
  [[ -x $FERRET_BIN ]] && have=$("$FERRET_BIN" --version 2>/dev/null || true)
  [[ $have == *"version: $FERRETDB_VERSION"* ]] && return 0
  local go
  go=$(command -v go || true)
  [[ -z $go && -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go
  if [[ -z $go ]]; then
    # Debian's golang-go may be too old for FerretDB (needs Go >= 1.24); see docs/services.md.
    apt_install golang-go
    go=$(command -v go) || die "no Go toolchain"
  fi
  log "ferretdb: building $FERRETDB_VERSION from the Go module proxy (about a minute)"
  # `go install ...@v1.24.2` builds a binary that panics at start: the module has no
  # build/version/version.txt (generated by FerretDB's release tooling). So: copy the
  # module source, write version.txt, and build that copy.
  local moddir src=$STATE/ferretdb-src
  moddir=$("$go" mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  [[ -d $moddir ]] || die "go mod download of FerretDB $FERRETDB_VERSION failed"
  rm -rf "$src"
  cp -r "$moddir" "$src"
  chmod -R u+w "$src"
  printf '%s\n' "$FERRETDB_VERSION" >"$src/build/version/version.txt"
  printf 'tributary-local\n' >"$src/build/version/package.txt"
  mkdir -p "$(dirname "$FERRET_BIN")"
  (cd "$src" && GOFLAGS=-buildvcs=false "$go" build -trimpath -o "$FERRET_BIN" ./cmd/ferretdb) >&2
  rm -rf "$src"
}

ferretdb_running() { port_open "$FERRET_PORT"; }

ferretdb_up() {
  if ferretdb_running; then
    log "ferretdb: already running on $HOST:$FERRET_PORT"
    return 0
  fi
  ferretdb_build
  mkdir -p "$FERRET_DIR" "$LOGS"
  log "ferretdb: starting on $HOST:$FERRET_PORT"
  # FerretDB 1.x spends over half its CPU in Go's garbage collector on the archive's
  # inserts; GOGC=400 cut its CPU per archived event by about a third (bench/RESULTS.md).
  GOGC=400 nohup setsid "$FERRET_BIN" \
    --handler=postgresql \
    --postgresql-url="postgres://tributary:tributary@$HOST:$PG_PORT/ferretdb" \
    --listen-addr="$HOST:$FERRET_PORT" \
    --state-dir="$FERRET_DIR" \
    --debug-addr=- \
    --telemetry=disable \
    --log-level=warn \
    </dev/null >"$LOGS/ferretdb.log" 2>&1 &
  echo $! >"$FERRET_DIR/ferretdb.pid"
  wait_started ferretdb 30 "$FERRET_DIR/ferretdb.pid" "$LOGS/ferretdb.log" ferretdb_running
}

ferretdb_down() {
  stop_pid ferretdb "$FERRET_DIR/ferretdb.pid" ferretdb
}

# ---------------------------------------------------------------- HAProxy

# The addresses deploy/haproxy/haproxy.cfg reads from its environment.
haproxy_env() {
  printf '%s\n' \
    "TRIBUTARY_HAPROXY_LISTEN=$HOST:$HAPROXY_PORT" \
    "TRIBUTARY_HAPROXY_NODE1=$HOST:${HAPROXY_NODE_PORTS[0]}" \
    "TRIBUTARY_HAPROXY_NODE2=$HOST:${HAPROXY_NODE_PORTS[1]}" \
    "TRIBUTARY_HAPROXY_STATS=$HOST:$HAPROXY_STATS_PORT"
}

# What the running HAProxy was started with: its config file and addresses.
haproxy_stamp() { { cat "$HAPROXY_CFG"; haproxy_env; } | sha256sum | cut -d' ' -f1; }

haproxy_running() { port_open "$HAPROXY_PORT"; }

haproxy_up() {
  local stamp env=()
  stamp=$(haproxy_stamp)
  if haproxy_running; then
    if pid_alive "$HAPROXY_DIR/haproxy.pid" haproxy \
      && [[ $(cat "$HAPROXY_DIR/stamp" 2>/dev/null) != "$stamp" ]]; then
      log "haproxy: $HAPROXY_CFG changed, restarting"
      haproxy_down
    else
      log "haproxy: already running on $HOST:$HAPROXY_PORT"
      return 0
    fi
  fi
  command -v haproxy >/dev/null || apt_install haproxy
  mkdir -p "$HAPROXY_DIR" "$LOGS"
  mapfile -t env < <(haproxy_env)
  env "${env[@]}" haproxy -c -q -f "$HAPROXY_CFG" >&2 || die "haproxy: $HAPROXY_CFG is invalid"
  log "haproxy: starting on $HOST:$HAPROXY_PORT (nodes on ${HAPROXY_NODE_PORTS[*]})"
  # -db: stay in the foreground (logs go to stdout, the pid is the one we record).
  nohup setsid env "${env[@]}" haproxy -db -f "$HAPROXY_CFG" \
    </dev/null >>"$LOGS/haproxy.log" 2>&1 &
  echo $! >"$HAPROXY_DIR/haproxy.pid"
  printf '%s\n' "$stamp" >"$HAPROXY_DIR/stamp"
  wait_started haproxy 10 "$HAPROXY_DIR/haproxy.pid" "$LOGS/haproxy.log" haproxy_running
}

haproxy_down() {
  stop_pid haproxy "$HAPROXY_DIR/haproxy.pid" haproxy
}

# ---------------------------------------------------------------- commands

# ---------------------------------------------------------------- Prometheus (tools only)

# prometheus_up: installs the Debian package's `prometheus` and `promtool`, which the
# tests run themselves (their own process on a free loopback port, a temporary config);
# no Prometheus service runs. Where the package started its system service (no
# policy-rc.d forbids it), it is stopped and disabled.
prometheus_up() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  apt_install prometheus
  if [[ -x /etc/init.d/prometheus ]] && /etc/init.d/prometheus status >/dev/null 2>&1; then
    local sudo=()
    [[ $EUID -eq 0 ]] || sudo=(sudo)
    log "stopping the prometheus system service the package started"
    "${sudo[@]}" /etc/init.d/prometheus stop >&2 || true
    "${sudo[@]}" update-rc.d prometheus disable >&2 2>&1 || true
  fi
}

# ---------------------------------------------------------------- Chromium (tool only)

# chromium_up: installs the Debian package's headless-capable `chromium`, which the live
# page test (crates/tributary/tests/live_page.rs) runs itself; nothing is started.
chromium_up() {
  command -v chromium >/dev/null && return 0
  apt_install chromium
}

# ---------------------------------------------------------------- Mosquitto

# Our broker's config: loopback, anonymous clients, persistent sessions kept on disk, no
# limit on the messages queued for a session that is away (a limit would drop some), up
# to 100 unacknowledged QoS 1 messages in flight per client.
mosquitto_config() {
  cat <<EOF
listener $MQTT_PORT $HOST
allow_anonymous true
EOF
  mosquitto_common "$MQTT_DIR"
}

# mosquitto_common DIR: what both brokers' configs hold: sessions persisted in DIR/data,
# every QoS 1 message queued for a session that is away, logs on stdout.
mosquitto_common() {
  cat <<EOF
user $(id -un)
persistence true
persistence_location $1/data/
autosave_interval 60
max_inflight_messages 100
max_queued_messages 0
log_dest stdout
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
EOF
}

mosquitto_running() { port_open "$MQTT_PORT"; }

# mosquitto_up: installs the Debian package when missing (stopping and disabling the
# system service its installation may have started) and runs our own broker.
mosquitto_up() {
  if mosquitto_running; then
    log "mosquitto: already running on $HOST:$MQTT_PORT"
    return 0
  fi
  if [[ ! -x /usr/sbin/mosquitto ]]; then
    apt_install mosquitto
    if [[ -x /etc/init.d/mosquitto ]] && /etc/init.d/mosquitto status >/dev/null 2>&1; then
      local sudo=()
      [[ $EUID -eq 0 ]] || sudo=(sudo)
      log "stopping the mosquitto system service the package started"
      "${sudo[@]}" /etc/init.d/mosquitto stop >&2 || true
      "${sudo[@]}" update-rc.d mosquitto disable >&2 2>&1 || true
    fi
  fi
  mkdir -p "$MQTT_DIR/data" "$LOGS"
  mosquitto_config >"$MQTT_DIR/mosquitto.conf"
  log "mosquitto: starting on $HOST:$MQTT_PORT"
  nohup setsid /usr/sbin/mosquitto -c "$MQTT_DIR/mosquitto.conf" \
    </dev/null >>"$LOGS/mosquitto.log" 2>&1 &
  echo $! >"$MQTT_DIR/mosquitto.pid"
  wait_started mosquitto 10 "$MQTT_DIR/mosquitto.pid" "$LOGS/mosquitto.log" mosquitto_running
}

mosquitto_down() {
  stop_pid mosquitto "$MQTT_DIR/mosquitto.pid" mosquitto
}

# The second broker: no anonymous clients, one user ($MQTT_USER, password $MQTT_PASSWORD,
# in a mosquitto_passwd file), a plain TCP listener and a TLS one (server certificate for
# 127.0.0.1 and localhost, signed by a test CA), persistent sessions as the first one.
mosquitto_secure_config() {
  cat <<EOF
per_listener_settings false
allow_anonymous false
password_file $MQTT_SECURE_DIR/passwd
EOF
  mosquitto_common "$MQTT_SECURE_DIR"
  cat <<EOF
listener $MQTT_AUTH_PORT $HOST
listener $MQTT_TLS_PORT $HOST
cafile $MQTT_SECURE_DIR/ca.pem
certfile $MQTT_SECURE_DIR/server.pem
keyfile $MQTT_SECURE_DIR/server.key
EOF
}

mosquitto_secure_running() { port_open "$MQTT_AUTH_PORT" && port_open "$MQTT_TLS_PORT"; }

# mosquitto_secure_files: the test CA, the server's key and certificate, and the password
# file, each made once (kept in $MQTT_SECURE_DIR).
mosquitto_secure_files() {
  local d=$MQTT_SECURE_DIR
  mkdir -p "$d/data"
  if [[ ! -s $d/ca.pem || ! -s $d/ca.key ]]; then
    log "mosquitto-secure: making a test CA"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout "$d/ca.key" -out "$d/ca.pem" \
      -subj "/CN=Tributary test CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    rm -f "$d/server.pem"
  fi
  if [[ ! -s $d/server.pem || ! -s $d/server.key ]]; then
    log "mosquitto-secure: making the server certificate (127.0.0.1, localhost)"
    openssl req -newkey rsa:2048 -nodes -keyout "$d/server.key" -out "$d/server.csr" \
      -subj "/CN=localhost" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" >"$d/server.ext"
    openssl x509 -req -days 3650 -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
      -CAcreateserial -out "$d/server.pem" -extfile "$d/server.ext" 2>/dev/null
  fi
  if [[ ! -s $d/passwd ]]; then
    mosquitto_passwd -c -b "$d/passwd" "$MQTT_USER" "$MQTT_PASSWORD" >&2
  fi
  chmod 600 "$d/ca.key" "$d/server.key" "$d/passwd"
}

# mosquitto_secure_up: the second broker (after mosquitto_up, which installs the package),
# and the command-line clients (the sources benchmark publishes with mosquitto_pub).
mosquitto_secure_up() {
  apt_install mosquitto-clients
  if mosquitto_secure_running; then
    log "mosquitto-secure: already running on $HOST:$MQTT_AUTH_PORT and $HOST:$MQTT_TLS_PORT (TLS)"
    return 0
  fi
  command -v openssl >/dev/null || apt_install openssl
  mosquitto_secure_files
  mkdir -p "$LOGS"
  mosquitto_secure_config >"$MQTT_SECURE_DIR/mosquitto.conf"
  log "mosquitto-secure: starting on $HOST:$MQTT_AUTH_PORT and $HOST:$MQTT_TLS_PORT (TLS)"
  nohup setsid /usr/sbin/mosquitto -c "$MQTT_SECURE_DIR/mosquitto.conf" \
    </dev/null >>"$LOGS/mosquitto-secure.log" 2>&1 &
  echo $! >"$MQTT_SECURE_DIR/mosquitto.pid"
  wait_started mosquitto-secure 10 "$MQTT_SECURE_DIR/mosquitto.pid" \
    "$LOGS/mosquitto-secure.log" mosquitto_secure_running
}

mosquitto_secure_down() {
  stop_pid mosquitto-secure "$MQTT_SECURE_DIR/mosquitto.pid" mosquitto
}

# ---------------------------------------------------------------- OpenSearch

# A single OpenSearch 2.19 node assembled from Maven Central, and the rsyslog log shipper
# installed (scripts/opensearch.sh; the log shipping test starts its own shipper).
opensearch_up() { "$SCRIPT_DIR/opensearch.sh" up; }
opensearch_down() { "$SCRIPT_DIR/opensearch.sh" down; }
opensearch_running() { "$SCRIPT_DIR/opensearch.sh" status; }

# ---------------------------------------------------------------- OpenTelemetry Collector

# The OTLP receiver and the file exporter, for the tracing test (scripts/otelcol.sh).
otelcol_up() { "$SCRIPT_DIR/otelcol.sh" up; }
otelcol_down() { "$SCRIPT_DIR/otelcol.sh" down; }
otelcol_running() { "$SCRIPT_DIR/otelcol.sh" status; }

cmd_up() {
  mkdir -p "$STATE" "$LOGS"
  # One `up` at a time: tests and benchmarks may call it together, and two builds of the
  # same service (FerretDB's source copy, Kafka's jars) would trip over each other. The
  # services started inherit the descriptor, so the lock is released explicitly on exit
  # (which releases it for them too) rather than when the descriptor closes.
  exec 9>"$STATE/up.lock"
  flock -w 900 9 || die "another 'services.sh up' has held $STATE/up.lock for 15 min"
  trap 'flock -u 9' EXIT
  local t0=$SECONDS t step
  for step in postgres_up redis_up ferretdb_up kafka_up haproxy_up prometheus_up chromium_up mosquitto_up mosquitto_secure_up opensearch_up otelcol_up; do
    t=$SECONDS
    "$step"
    log "${step%_up}: ok ($((SECONDS - t)) s)"
  done
  log "all services up ($((SECONDS - t0)) s); logs in $LOGS"
  print_env
}

cmd_down() {
  otelcol_down
  opensearch_down
  mosquitto_secure_down
  mosquitto_down
  haproxy_down
  ferretdb_down
  kafka_down
  redis_down
  postgres_down
  log "all services down"
}

cmd_status() {
  local rc=0
  st() {
    if "$2"; then
      printf '%-9s running  %s\n' "$1" "$3"
    else
      printf '%-9s stopped  %s\n' "$1" "$3"
      rc=1
    fi
  }
  st postgres pg_running "$HOST:$PG_PORT"
  st redis redis_running "$HOST:$REDIS_PORT"
  st kafka kafka_running "$HOST:$KAFKA_PORT"
  st ferretdb ferretdb_running "$HOST:$FERRET_PORT"
  st haproxy haproxy_running "$HOST:$HAPROXY_PORT"
  st mosquitto mosquitto_running "$HOST:$MQTT_PORT"
  st mosquitto-secure mosquitto_secure_running "$HOST:$MQTT_AUTH_PORT,$MQTT_TLS_PORT"
  st opensearch opensearch_running "$("$SCRIPT_DIR/opensearch.sh" env | sed 's/.*=//')"
  st otelcol otelcol_running "$("$SCRIPT_DIR/otelcol.sh" env | sed -n 's/.*ENDPOINT=//p')"
  printf 'state dir: %s\n' "$STATE"
  return $rc
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) print_env ;;
  kafka-instance)
    # A private broker in the foreground, e.g. for a test that kills it:
    #   scripts/services.sh kafka-instance /tmp/broker 19192 19193
    shift
    (($# == 3)) || die "usage: $0 kafka-instance DIR PORT CONTROLLER-PORT"
    kafka_instance "$@"
    ;;
  kafka-tool)
    # Run a Kafka tool class against the local broker's jars, e.g.
    #   scripts/services.sh kafka-tool org.apache.kafka.tools.TopicCommand \
    #     --bootstrap-server 127.0.0.1:19092 --list
    shift
    (($#)) || die "usage: $0 kafka-tool MAIN-CLASS [ARGS...]"
    kafka_libs
    kafka_config_tools
    kafka_java "$@"
    ;;
  *)
    echo "usage: $0 up|down|status|env|kafka-tool MAIN-CLASS [ARGS...]|kafka-instance DIR PORT CONTROLLER-PORT" >&2
    exit 2
    ;;
esac
