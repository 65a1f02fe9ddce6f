#!/usr/bin/env bash
# make clusterset-up / clusterset-down: three real clusters with eastwest
# installed from its chart (test/clusterset's TestHelmInstall with -keep),
# left running in the background until `down`. DIR (default
# .cache/clusterset) gets the kubeconfigs, a README of what to try, the
# log and the pid. Needs root, as the real-node tests do.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cmd="${1:?up or down}"
dir="${2:-$root/.cache/clusterset}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
running() { [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; }

case "$cmd" in
up)
  if running; then
    echo "already running (pid $(cat "$dir/pid")):"
    cat "$dir/README"
    exit 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "real clusters need root (network namespaces, containerd, the kubelet)" >&2
    exit 1
  fi
  rm -f "$dir/ready" "$dir/stop" "$dir/README"
  echo "building the test harness"
  (cd "$root" && go test -c -o "$dir/clusterset.test" ./test/clusterset)
  echo "starting three clusters and installing eastwest (about 3 minutes; log: $dir/log)"
  # In a session of its own, holding none of this shell's descriptors
  # (make's pipe stays free): it outlives the make that started it.
  cd "$root/test/clusterset"
  setsid "$dir/clusterset.test" -test.run '^TestHelmInstall$' -test.v -test.timeout 0 -keep "$dir" </dev/null >"$dir/log" 2>&1 &
  echo $! >"$dir/pid"
  cd "$root"
  while [ ! -f "$dir/ready" ]; do
    if ! running; then
      echo "the ClusterSet did not come up; the log ends:" >&2
      tail -40 "$dir/log" >&2
      exit 1
    fi
    sleep 2
  done
  echo
  cat "$dir/README"
  ;;
down)
  if ! running; then
    echo "no ClusterSet is running from $dir"
    exit 0
  fi
  touch "$dir/stop"
  echo "stopping the ClusterSet (pid $(cat "$dir/pid"))"
  for _ in $(seq 120); do
    running || { rm -f "$dir/pid" "$dir/stop"; echo "stopped: nothing of it is left"; exit 0; }
    sleep 1
  done
  echo "still running after 2 minutes; see $dir/log" >&2
  exit 1
  ;;
*)
  echo "usage: $0 up|down [DIR]" >&2
  exit 2
  ;;
esac
