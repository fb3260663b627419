#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Prepare a Debian 13 (trixie) chroot with GIMP 3.0 and build DermLens's
# plug-in against gimp-3.0 inside it.
#
#   setup-gimp3-chroot.sh prepare     create/reuse the chroot (needs root + network once)
#   setup-gimp3-chroot.sh build SRC   copy SRC into the chroot and build it there
#   setup-gimp3-chroot.sh all SRC     both (default when SRC is given)
#
# Environment: DL_GIMP3_CHROOT (default /var/tmp/dermlens-gimp3-root),
#              DL_DEBIAN_MIRROR (default http://deb.debian.org/debian).
# Exit status: 0 ok, 77 when the chroot cannot be created (not root, no
# debootstrap, no network), 1 on a build failure.
set -eu

ROOT=${DL_GIMP3_CHROOT:-/var/tmp/dermlens-gimp3-root}
MIRROR=${DL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PKGS="gimp libgimp-3.0-dev meson ninja-build gcc pkg-config libopenblas-dev libpng-dev libjpeg-dev libcjson-dev libglib2.0-dev ca-certificates xvfb xauth"
STAMP="$ROOT/.dermlens-ready"

skip() { echo "SKIP: $*" >&2; exit 77; }
log() { echo "[gimp3-chroot] $*" >&2; }

MOUNTED=""
umount_all() {
    for m in $MOUNTED; do umount -l "$m" 2>/dev/null || true; done
    MOUNTED=""
}
mount_fs() {
    # Only what apt and dpkg need; GIMP itself runs without these.
    for d in proc sys dev dev/pts dev/shm; do mkdir -p "$ROOT/$d"; done
    mountpoint -q "$ROOT/proc" || { mount -t proc proc "$ROOT/proc"; MOUNTED="$ROOT/proc $MOUNTED"; }
    mountpoint -q "$ROOT/sys" || { mount -t sysfs sys "$ROOT/sys"; MOUNTED="$ROOT/sys $MOUNTED"; }
    mountpoint -q "$ROOT/dev" || { mount --bind /dev "$ROOT/dev"; MOUNTED="$ROOT/dev $MOUNTED"; }
    mountpoint -q "$ROOT/dev/pts" || { mount --bind /dev/pts "$ROOT/dev/pts"; MOUNTED="$ROOT/dev/pts $MOUNTED"; }
    mountpoint -q "$ROOT/dev/shm" || { mount -t tmpfs shm "$ROOT/dev/shm"; MOUNTED="$ROOT/dev/shm $MOUNTED"; }
}
trap umount_all EXIT INT TERM

in_chroot() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

prepare() {
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PKGS" ]; then
        log "reusing $ROOT"
        return 0
    fi
    [ "$(id -u)" = 0 ] || skip "building the GIMP 3 chroot needs root (chroot, mount)"
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap"
        apt-get install -y debootstrap >/dev/null 2>&1 || \
            { apt-get update >/dev/null 2>&1 && apt-get install -y debootstrap >/dev/null 2>&1; } || \
            skip "debootstrap is not installed and cannot be installed"
    fi
    if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
        log "debootstrap trixie into $ROOT"
        rm -rf "$ROOT.partial"
        mkdir -p "$ROOT.partial"
        if ! debootstrap --variant=minbase trixie "$ROOT.partial" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1; then
            tail -5 "$ROOT.debootstrap.log" >&2
            rm -rf "$ROOT.partial"
            skip "debootstrap of Debian trixie failed (no network to $MIRROR?)"
        fi
        rm -rf "$ROOT"
        mv "$ROOT.partial" "$ROOT"
    fi
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod 755 "$ROOT/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    mount_fs
    log "installing GIMP 3 and build tools in the chroot"
    if ! in_chroot sh -c "apt-get update && apt-get install -y --no-install-recommends $PKGS && apt-get clean" \
            >"$ROOT.apt.log" 2>&1; then
        tail -20 "$ROOT.apt.log" >&2
        umount_all
        skip "apt-get inside the trixie chroot failed (no network?)"
    fi
    umount_all
    echo "$PKGS" >"$STAMP"
    log "chroot ready: $ROOT"
}

build() {
    src=$1
    [ -f "$STAMP" ] || skip "chroot $ROOT is not prepared"
    [ -f "$src/meson.build" ] || { echo "no meson.build in $src" >&2; exit 1; }
    dst="$ROOT/src/dermlens"
    # tar keeps the source's mtimes: after a build from another checkout
    # (another worktree sharing this chroot), older files would not look
    # changed to ninja and its files would linger. Start clean then.
    last=$(cat "$ROOT/build/.dermlens-source" 2>/dev/null || true)
    if [ "$last" != "$(cd "$src" && pwd)" ]; then
        log "new source tree ($src, was ${last:-none}): clean copy and build"
        rm -rf "$dst" "$ROOT/build/dermlens"
    fi
    log "copying $src into $dst"
    mkdir -p "$dst" "$ROOT/build"
    # Copy sources only: other people's build directories and VCS data stay out.
    (cd "$src" && tar -cf - --exclude='./build*' --exclude='./.git' --exclude='./weights/*.partial' .) | \
        (cd "$dst" && tar -xf -)
    # The default ../shared lookup would point into the chroot; tests get DL_SHARED_DIR instead.
    if [ ! -f "$ROOT/build/dermlens/build.ninja" ]; then
        in_chroot meson setup /build/dermlens /src/dermlens -Dplugin=enabled -Dgimp_api=3.0 \
            -Dgimp_tests=disabled --buildtype=release || exit 1
    fi
    # Only what the GIMP test needs: the plug-in and the CLI (the machine may be busy).
    in_chroot ninja -j1 -C /build/dermlens plugin/dermlens cli/dermlens || exit 1
    (cd "$src" && pwd) > "$ROOT/build/.dermlens-source"
    log "built in $ROOT/build/dermlens"
}

cmd=${1:-prepare}
case "$cmd" in
    prepare) prepare ;;
    build) [ $# -ge 2 ] || { echo "usage: $0 build SRC" >&2; exit 2; }; build "$2" ;;
    all) [ $# -ge 2 ] || { echo "usage: $0 all SRC" >&2; exit 2; }; prepare; build "$2" ;;
    *) echo "usage: $0 prepare | build SRC | all SRC" >&2; exit 2 ;;
esac
