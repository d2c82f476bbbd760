#!/usr/bin/env bash
# `make lab`: a three-host Calico network built from network namespaces on this machine, then a policy, and the
# proof that it works. Nothing in the machine's own network namespace changes. KEEP=1 keeps the lab afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
LAB=${LAB:-demo}
KEEP=${KEEP:-}
export CALICO_LAB_DIR=${CALICO_LAB_DIR:-/run/calico-lab}

lab() { "$BIN/calico-lab" "$@" --name "$LAB"; }
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
expect() {  # expect allowed|blocked SRC DST: one probe on tcp 8080, checked
  local want=$1 src=$2 dst=$3 got
  if lab probe "$src" "$dst" --port 8080 >/dev/null; then got=allowed; else got=blocked; fi
  if [ "$got" != "$want" ]; then echo "FAILED: $src -> $dst is $got, expected $want" >&2; exit 1; fi
  echo "  $src -> $dst: $got (as expected)"
}
finish() {
  local rc=$?
  if [ -n "$KEEP" ]; then
    echo; echo "The lab stays up. Try: eval \"\$($BIN/calico-lab env --name $LAB)\"; $BIN/calicoctl get nodes -o wide"
    echo "Tear it down with: make lab-down"
  else
    step "Tearing down (KEEP=1 keeps the lab)"; lab down || true
  fi
  [ $rc -eq 0 ] && echo "demo OK" || echo "demo FAILED" >&2
  exit $rc
}

step "Three hosts, each running calico-node: Felix, BIRD and the BGP renderer (node-to-node mesh, AS 64512)"
lab down >/dev/null 2>&1 || true
lab up --hosts 3
trap finish EXIT
eval "$(lab env)"

step "Each namespace's default profile allows everything (as Kubernetes gives every namespace)"
"$BIN/calicoctl" apply -f examples/profile-kns-default.yaml

step "Two workloads per host; their addresses come from Calico IPAM (a /26 block per host)"
lab workload add web-1 --host h1 --labels role=web --profile kns.default
lab workload add client-1 --host h1 --labels role=client --profile kns.default
lab workload add web-2 --host h2 --labels role=web --profile kns.default
lab workload add client-2 --host h2 --labels role=client --profile kns.default
lab workload add db --host h3 --labels role=db --profile kns.default
lab workload add other --host h3 --labels role=other --profile kns.default

step "BGP: every host learns the others' blocks"
lab wait --timeout 45
lab status
"$BIN/calicoctl" ipam show --show-blocks

step "Who reaches whom on tcp 8080, across hosts (row = from, column = to)"
lab matrix --port 8080
expect allowed web-1 db
expect allowed client-2 db
expect allowed other web-2

step "Policy from a file: only the web tier may reach the database"
cat examples/policy-db.yaml
"$BIN/calicoctl" apply -f examples/policy-db.yaml
lab matrix --port 8080
expect allowed web-1 db
expect allowed web-2 db
expect blocked client-1 db
expect blocked client-2 db
expect allowed client-1 web-2
