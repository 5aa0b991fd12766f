#!/usr/bin/env bash
# Makes a Debian sid chroot with Debian's `blender` package, Xvfb and ImageMagick, for the GUI smoke
# test (a real Blender window). Idempotent: a marker file makes reruns instant.
# Usage: tests/gui/setup_chroot.sh [DIR]   (default $TRELLIS_GUI_CHROOT or /var/cache/trellis2-gui/sid)
set -euo pipefail
DIR=${1:-${TRELLIS_GUI_CHROOT:-/var/cache/trellis2-gui/sid}}
MARK="$DIR/.trellis-gui-ready"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
APT=(apt-get -y -q -o Acquire::Check-Valid-Until=false -o Dpkg::Use-Pty=0)
PACKAGES="blender python3-numpy python3-requests python3-jsonschema python3-tqdm python3-pil xvfb xauth imagemagick xdotool python3-pip fonts-dejavu-core libgl1-mesa-dri mesa-utils ca-certificates"

if [ -f "$MARK" ]; then echo "GUI chroot ready: $DIR"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "setup_chroot: needs root (debootstrap, chroot)" >&2; exit 1; }
if ! command -v debootstrap >/dev/null; then
  echo "== installing debootstrap on the host"
  apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
fi
if [ ! -x "$DIR/usr/bin/apt-get" ]; then
  echo "== debootstrap sid into $DIR (minbase)"
  mkdir -p "$DIR"
  # The host's keyring may predate sid's signing keys: then fall back to an unchecked bootstrap.
  debootstrap --variant=minbase sid "$DIR" "$MIRROR" \
    || { echo "== retrying without signature checks"; rm -rf "$DIR"; mkdir -p "$DIR";
         debootstrap --no-check-gpg --variant=minbase sid "$DIR" "$MIRROR"; }
fi
cleanup() { umount -l "$DIR/proc" "$DIR/dev" 2>/dev/null || true; }
trap cleanup EXIT
mount -t proc proc "$DIR/proc"
mount --bind /dev "$DIR/dev"
cp /etc/resolv.conf "$DIR/etc/resolv.conf" 2>/dev/null || true
echo "== apt-get install $PACKAGES"
chroot "$DIR" "${APT[@]}" update
chroot "$DIR" env DEBIAN_FRONTEND=noninteractive "${APT[@]}" install --no-install-recommends $PACKAGES
chroot "$DIR" apt-get clean  # the downloaded packages (about 300 MB): CI's disk is small
# Blender's bundled extension manager needs cattrs and attrs (and cattrs typing_extensions); Debian's blender uses the system Python.
# pytest and pytest-blender let the test suite run inside this Blender binary (run_in_blender_binary.sh).
WHEELS=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: -d "$WHEELS" cattrs==25.1.1 attrs==25.3.0 \
  typing_extensions==4.15.0 pytest==8.3.4 pluggy==1.7.0 iniconfig==2.3.1 pytest-blender==3.0.8
mkdir -p "$DIR/tmp/wheels" && cp "$WHEELS"/*.whl "$DIR/tmp/wheels/"
chroot "$DIR" sh -c 'python3 -m pip install -q --no-deps --ignore-installed --break-system-packages /tmp/wheels/*.whl'
chroot "$DIR" blender --version | head -n 1
touch "$MARK"
echo "GUI chroot ready: $DIR"
