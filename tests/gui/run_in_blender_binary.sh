#!/usr/bin/env bash
# Runs the whole pytest suite inside a Blender binary (Debian sid's blender, in the GUI chroot)
# through pytest-blender: `pytest --blender-executable /usr/bin/blender`.
# Usage: tests/gui/run_in_blender_binary.sh JUNIT_XML   (prints "SKIP: ..." and exits 0 without the chroot)
set -uo pipefail
JUNIT=$(realpath -m "$1")
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(dirname "$(dirname "$HERE")")
DIR=${TRELLIS_GUI_CHROOT:-/var/cache/trellis2-gui/sid}
[ "$(id -u)" = 0 ] || { echo "SKIP: pytest-blender run: needs root for the chroot"; exit 0; }
[ -f "$DIR/.trellis-gui-ready" ] || { echo "SKIP: pytest-blender run: no Blender chroot at $DIR"; exit 0; }
chroot "$DIR" python3 -c "import pytest_blender" 2>/dev/null \
  || { echo "SKIP: pytest-blender is not installed in $DIR (rerun tests/gui/setup_chroot.sh)"; exit 0; }

WORK="$DIR/tmp/trellis-repo"
rm -rf "$WORK" && mkdir -p "$WORK"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar -c) | tar -x -C "$WORK"
mount -t proc proc "$DIR/proc"
mount --bind /dev "$DIR/dev"
cleanup() { umount -l "$DIR/proc" "$DIR/dev" 2>/dev/null || true; }
trap cleanup EXIT
chroot "$DIR" env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
  BLENDER_USER_RESOURCES=/tmp/trellis-repo/.blender-user sh -c \
  'cd /tmp/trellis-repo && timeout 1500 python3 -m pytest -c tests/pytest.ini tests \
     --blender-executable /usr/bin/blender --junitxml=/tmp/trellis-repo/junit.xml'
rc=$?
cp "$WORK/junit.xml" "$JUNIT" 2>/dev/null
exit $rc
