#!/usr/bin/env bash
# Set up (venv with pinned bpy 5.0.1) and run the main job: a headless generation from the bundled
# example image on the offline Preview backend, writing out/<name>.glb, .blend and .png.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements/blender-5.0.txt
exec .venv/bin/python scripts/demo.py "$@"
