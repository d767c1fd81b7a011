#!/usr/bin/env bash
# Checks the deployment files without a cluster:
#   - the Helm chart (deploy/helm/tributary): `helm lint`, then `helm template` with the
#     default values and with every optional object on, each rendered object checked
#     against the Kubernetes API types by deploy/helm/schemacheck (unknown fields, wrong
#     types and unknown kinds fail; it stands in for kubeconform, whose schemas come from
#     GitHub, which CI cannot reach);
#   - the Prometheus rules: `promtool check rules` and their unit tests;
#   - the JSON of the Grafana dashboard and the OpenSearch index template.
# Tools are installed once into ${TRIBUTARY_TOOLS_DIR:-$HOME/.cache/tributary/tools}: helm
# with `go install` from the Go module proxy (about 2.5 min on 2 cores the first time,
# then cached), schemacheck with `go build` (about 20 s). promtool comes with the Debian
# package `prometheus` (scripts/services.sh up installs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HELM_VERSION=v3.22.0
KUBE_VERSION=1.33.0
TOOLS="${TRIBUTARY_TOOLS_DIR:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache/tributary/tools}"
BIN="$TOOLS/bin"
mkdir -p "$BIN"
log() { printf '[check-deploy] %s\n' "$*" >&2; }
command -v go >/dev/null || { log "ERROR: go is needed (helm and schemacheck are built from the Go module proxy)"; exit 1; }
command -v promtool >/dev/null || { log "ERROR: promtool is needed: scripts/services.sh up installs it"; exit 1; }

# helm, at HELM_VERSION.
if [[ ! -x "$BIN/helm" ]] || ! "$BIN/helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  log "go install helm $HELM_VERSION (first time: minutes)"
  t=$SECONDS
  GOBIN="$BIN" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  log "helm installed in $((SECONDS - t)) s"
fi

# schemacheck, rebuilt when its sources change.
stamp=$(cat deploy/helm/schemacheck/go.mod deploy/helm/schemacheck/go.sum deploy/helm/schemacheck/*.go | sha256sum | cut -d' ' -f1)
if [[ ! -x "$BIN/schemacheck" || "$(cat "$BIN/schemacheck.stamp" 2>/dev/null)" != "$stamp" ]]; then
  log "go build schemacheck"
  (cd deploy/helm/schemacheck && go build -o "$BIN/schemacheck" .)
  echo "$stamp" > "$BIN/schemacheck.stamp"
fi

chart=deploy/helm/tributary
log "helm lint"
"$BIN/helm" lint --strict "$chart" --set apiKey.value=lint >&2
for values in \
  "--set apiKey.value=check" \
  "--set apiKey.value=check --set ingress.enabled=true --set serviceMonitor.enabled=true" \
  "--set apiKey.existingSecret=keys --set gateway.autoscaling.enabled=false --set topologySpread.enabled=false"; do
  log "helm template $values"
  # shellcheck disable=SC2086
  "$BIN/helm" template check "$chart" --kube-version "$KUBE_VERSION" $values | "$BIN/schemacheck" >&2
done
# Refused: no API key; a misspelled value; a grace period shorter than the drain
# (values.schema.json).
for values in \
  "" \
  "--set apiKey.value=check --set gateway.replica=3" \
  "--set apiKey.value=check --set processor.terminationGracePeriodSeconds=5"; do
  # shellcheck disable=SC2086
  if "$BIN/helm" template check "$chart" --kube-version "$KUBE_VERSION" $values >/dev/null 2>&1; then
    log "FAILED: the chart rendered with bad values: ${values:-no API key}"
    exit 1
  fi
done

# The Ingress routes the API and its pages, never /metrics (its labels name every
# tenant's streams) nor everything under / (a Prefix /).
ingress=$("$BIN/helm" template check "$chart" --kube-version "$KUBE_VERSION" \
  --set apiKey.value=check --set ingress.enabled=true --show-only templates/ingress.yaml)
if grep -q 'path: /metrics' <<<"$ingress" || grep -A1 'path: /$' <<<"$ingress" | grep -q Prefix; then
  log "FAILED: the Ingress routes /metrics to the pods"
  exit 1
fi

log "promtool"
(cd deploy/prometheus && promtool check rules tributary-rules.yml && promtool test rules tributary-rules.test.yml) >&2

log "JSON files"
for f in deploy/grafana/*.json deploy/opensearch/*.json; do
  python3 -m json.tool "$f" >/dev/null || { log "FAILED: $f is not JSON"; exit 1; }
done
log "ok"
