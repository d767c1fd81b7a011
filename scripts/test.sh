#!/usr/bin/env bash
# The project's single test command: start the local services (scripts/services.sh up),
# export their addresses, then run the whole workspace's tests. Extra args go to cargo test,
# e.g. scripts/test.sh -p tributary-core -- --nocapture
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-build-deps.sh
services_env=$(scripts/services.sh up)
eval "$services_env"
printf '%s\n' "$services_env" >&2

# The Helm chart, Prometheus rules and dashboards (scripts/check-deploy.sh; helm is built
# once with `go install`, then cached).
scripts/check-deploy.sh

cargo test --workspace --all-targets "$@"
