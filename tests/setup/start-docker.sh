#!/usr/bin/env bash
# Makes sure a Docker engine answers: starts dockerd in the background when none does and we
# are root. Exit 0 when an engine answers, 1 otherwise (the tests then skip, or fail in CI).
# DOCKERD_FLAGS: extra dockerd flags (tests/integration/test_takeover_restart.py starts it with
# --live-restore for a while, then as CI does, with none).
set -uo pipefail
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker || true)}
[ -n "$DOCKER" ] || { echo "no docker client installed"; exit 1; }
"$DOCKER" info >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v dockerd >/dev/null 2>&1; then
  echo "no Docker engine answers and none can be started here"; exit 1
fi
log=${DOCKERD_LOG:-/var/log/scopedns-dockerd.log}
echo "starting dockerd (log: $log)"
# shellcheck disable=SC2086  # flags are words
nohup dockerd ${DOCKERD_FLAGS:-} >"$log" 2>&1 &
for _ in $(seq 60); do
  "$DOCKER" info >/dev/null 2>&1 && { echo "dockerd is up"; exit 0; }
  sleep 1
done
echo "dockerd did not come up in 60 s; last lines of $log:"; tail -5 "$log"
exit 1
