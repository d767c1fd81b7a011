#!/usr/bin/env bash
# Ships a file of Tributary's ECS JSON log lines into OpenSearch (or Elasticsearch): runs
# a separate rsyslogd instance (not the system's) in the foreground with
# deploy/opensearch/rsyslog-tributary.conf, which tails LOG-FILE and indexes each line as
# it is into INDEX-PREFIX + YYYY.MM.DD. The script execs rsyslogd: stop it with SIGTERM.
#
# Usage: scripts/log-shipper.sh LOG-FILE STATE-DIR [INDEX-PREFIX]
#   LOG-FILE      where Tributary's stdout goes (need not exist yet)
#   STATE-DIR     the instance's own directory: pid file, read positions, queue, and
#                 rejected.json (lines the cluster refused, with its answer)
#   INDEX-PREFIX  default tributary-logs- (the index template's pattern is tributary-logs-*)
# The cluster: $TRIBUTARY_OPENSEARCH_URL (scripts/services.sh env), default
# http://127.0.0.1:19200. Needs the Debian packages rsyslog and rsyslog-elasticsearch
# (scripts/opensearch.sh up installs them).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF="$(dirname "$SCRIPT_DIR")/deploy/opensearch/rsyslog-tributary.conf"

(($# == 2 || $# == 3)) || {
  echo "usage: $0 LOG-FILE STATE-DIR [INDEX-PREFIX]" >&2
  exit 2
}
[[ -x /usr/sbin/rsyslogd ]] || {
  echo "log-shipper: no /usr/sbin/rsyslogd (run scripts/opensearch.sh up)" >&2
  exit 1
}
mkdir -p "$2"
export TRIBUTARY_LOG_FILE
export TRIBUTARY_SHIPPER_STATE
TRIBUTARY_LOG_FILE="$(realpath -m "$1")"
TRIBUTARY_SHIPPER_STATE="$(realpath "$2")"
export TRIBUTARY_LOGS_INDEX="${3:-tributary-logs-}"
export TRIBUTARY_OPENSEARCH_URL="${TRIBUTARY_OPENSEARCH_URL:-http://127.0.0.1:19200}"

/usr/sbin/rsyslogd -N1 -f "$CONF" >&2 || {
  echo "log-shipper: $CONF is invalid" >&2
  exit 1
}
exec /usr/sbin/rsyslogd -n -f "$CONF" -i "$TRIBUTARY_SHIPPER_STATE/rsyslogd.pid"
