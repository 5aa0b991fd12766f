#!/usr/bin/env bash
# Runs tests/gui/gui_smoke.py in a real Blender window (Debian sid's blender under Xvfb, in a chroot).
# Usage: tests/gui/run_gui_smoke.sh ZIP OUTDIR
# Builds the chroot first when missing (tests/gui/setup_chroot.sh; TRELLIS_GUI_NO_SETUP=1 skips that).
# Where no such Blender can be had it prints "SKIP: <reason>" and exits 0.
set -uo pipefail
ZIP=$(realpath "$1"); OUT=$(realpath -m "$2")
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(dirname "$(dirname "$HERE")")
DIR=${TRELLIS_GUI_CHROOT:-/var/cache/trellis2-gui/sid}
skip() { echo "SKIP: GUI smoke test: $*"; exit 0; }

[ "$(id -u)" = 0 ] || skip "needs root for the chroot"
if [ ! -f "$DIR/.trellis-gui-ready" ]; then
  [ -n "${TRELLIS_GUI_NO_SETUP:-}" ] && skip "no Blender chroot at $DIR (run tests/gui/setup_chroot.sh)"
  echo "== building the GUI chroot (log: $OUT/setup.log)"
  mkdir -p "$OUT"
  timeout 1800 bash "$HERE/setup_chroot.sh" "$DIR" > "$OUT/setup.log" 2>&1 \
    || skip "could not build the Blender chroot (see $OUT/setup.log: $(tail -n 1 "$OUT/setup.log"))"
fi

WORK="$DIR/tmp/trellis-gui"
rm -rf "$WORK" && mkdir -p "$WORK/out"
cp "$ZIP" "$WORK/trellis2.zip"
cp "$HERE/gui_smoke.py" "$REPO/examples/mushroom.png" "$WORK/"
mkdir -p "$WORK/tests" && cp -r "$REPO/tests/servers" "$REPO/tests/data" "$WORK/tests/"  # local Runware server
mount -t proc proc "$DIR/proc"
mount --bind /dev "$DIR/dev"
cleanup() { umount -l "$DIR/proc" "$DIR/dev" 2>/dev/null || true; }
trap cleanup EXIT

chroot "$DIR" env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin DISPLAY=:99 LANG=C.UTF-8 \
  BLENDER_USER_RESOURCES=/tmp/trellis-gui/user TRELLIS_GUI_BENCH="${TRELLIS_GUI_BENCH:-}" \
  TRELLIS_GUI_BENCH_HEAVY="${TRELLIS_GUI_BENCH_HEAVY:-}" TRELLIS_GUI_BENCH_FINISH="${TRELLIS_GUI_BENCH_FINISH:-}" \
  TRELLIS_GUI_TIMEOUT="${TRELLIS_GUI_TIMEOUT:-600}" \
  bash -c '
    Xvfb :99 -screen 0 1600x1000x24 -nolisten tcp >/tmp/trellis-gui/xvfb.log 2>&1 &
    xvfb=$!
    for _ in $(seq 50); do [ -e /tmp/.X11-unix/X99 ] && break; sleep 0.1; done
    timeout ${TRELLIS_GUI_TIMEOUT:-600} blender --factory-startup --window-geometry 0 0 1600 1000 --python-exit-code 1 \
      --python /tmp/trellis-gui/gui_smoke.py -- /tmp/trellis-gui/trellis2.zip /tmp/trellis-gui/out \
      /tmp/trellis-gui/mushroom.png > /tmp/trellis-gui/out/blender.log 2>&1
    rc=$?
    kill $xvfb 2>/dev/null
    exit $rc'
rc=$?
mkdir -p "$OUT" && cp -r "$WORK/out/." "$OUT/"
grep -h "GUI SMOKE" "$OUT/blender.log" || tail -n 30 "$OUT/blender.log"
echo "GUI smoke test: exit $rc, screenshots and result.json in $OUT"
exit $rc
