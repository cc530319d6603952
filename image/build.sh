#!/usr/bin/env bash
# `make image`: builds $IMAGE (default scopedns:latest) from the Dockerfile without network in
# the build. The base ($BASE, default the public python:3.11-slim-bookworm) is used if present
# or pullable; otherwise scopedns-base:bookworm is built locally once (image/build-base.sh).
# Wheels of scopedns and its dependencies are built on the host ($PYTHON -m pip wheel) into
# build/wheels and installed in the image with --no-index.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
IMAGE=${IMAGE:-scopedns:latest}
BASE=${BASE:-python:3.11-slim-bookworm}
LOCAL_BASE=${LOCAL_BASE:-scopedns-base:bookworm}
PYTHON=${PYTHON:-.venv/bin/python}

if ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
  if timeout 60 "$DOCKER" pull -q "$BASE" >/dev/null 2>&1; then
    :
  else
    echo "cannot pull $BASE (no registry?): using the local base $LOCAL_BASE"
    LOCAL_BASE=$LOCAL_BASE DOCKER=$DOCKER bash image/build-base.sh
    BASE=$LOCAL_BASE
  fi
fi
rm -rf build/wheels
"$PYTHON" -m pip wheel -q --wheel-dir build/wheels . >/dev/null
"$DOCKER" build -q --build-arg "BASE=$BASE" -t "$IMAGE" . >/dev/null
echo "built $IMAGE from $BASE ($("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
