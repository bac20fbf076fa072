# shellcheck shell=bash
# The Debian sid root of ci/newest: libvirt 12.8 and QEMU 11.1 from the package registry, built
# once with debootstrap and cached under $CACHE/newest/, keyed by the package versions.
# Sourced by ci/newest; expects CACHE, and die/log functions.
#
# Pinned versions (the key of the cache): change them here, and a new root is built beside the old.
SID_LIBVIRT_VERSION=${SID_LIBVIRT_VERSION:-12.8.0-1}
SID_QEMU_VERSION=${SID_QEMU_VERSION:-1:11.1.3+ds-1}
SID_PACKAGES=(libvirt-daemon-driver-qemu libvirt-daemon libvirt-clients qemu-system-x86)
# apt inside the root: sid's Release file on the registry is past its Valid-Until date.
SID_APT=(apt-get -o Acquire::Check-Valid-Until=false -o APT::Sandbox::User=root -y -qq)

sid_key() { local q=${SID_QEMU_VERSION#*:}; echo "sid-libvirt-${SID_LIBVIRT_VERSION}-qemu-${q}"; }
SID_ROOT=$CACHE/newest/$(sid_key)
QEMU_WRAPPER=$CACHE/newest/qemu-11.1

# The Debian mirror the host's apt uses (one-line or deb822 sources).
host_mirror() {
  local m
  m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
      grep -v '^[[:space:]]*#' | grep -o 'https\?://[^ ]*/debian/\?\( \|$\)' | grep -v security | sed -n 1p | tr -d ' ')
  [ -n "$m" ] || die "no Debian mirror in the host's apt sources"
  echo "${m%/}"
}

# debootstrap: the installed one, or the host's package extracted (apt-get download + dpkg-deb -x).
DEBOOTSTRAP=()
find_debootstrap() {
  if command -v debootstrap >/dev/null; then DEBOOTSTRAP=(debootstrap); return; fi
  local d=$CACHE/newest/debootstrap
  if [ ! -x "$d/usr/sbin/debootstrap" ]; then
    local tmp; tmp=$(mktemp -d); chmod 755 "$tmp"  # apt downloads as _apt
    (cd "$tmp" && apt-get download -qq debootstrap) || die "apt-get download debootstrap failed"
    rm -rf "$d"; mkdir -p "$d"
    dpkg-deb -x "$tmp"/debootstrap_*.deb "$d"
    rm -rf "$tmp"
  fi
  DEBOOTSTRAP=(env "DEBOOTSTRAP_DIR=$d/usr/share/debootstrap" "$d/usr/sbin/debootstrap")
}

# Mounts made under a root; sid_umount_all undoes them (innermost first), whatever happened.
SID_MOUNTS=()
sid_mount() { # sid_mount ARGS... TARGET
  local target=${*: -1}
  mkdir -p "$target"
  mount "$@" || die "mount $* failed"
  SID_MOUNTS+=("$target")
}
sid_umount_all() {
  local i m rc=0
  for ((i = ${#SID_MOUNTS[@]} - 1; i >= 0; i--)); do
    m=${SID_MOUNTS[$i]}
    mountpoint -q "$m" || continue
    umount "$m" 2>/dev/null || umount -l "$m" || rc=1
  done
  SID_MOUNTS=()
  return $rc
}
# No mount left under a root (checked at the end of the lane).
sid_no_mounts_under() { ! grep -q " $1[/ ]" /proc/self/mounts; }

sid_versions() { # the installed versions of the packages, one "name version" a line
  dpkg-query --admindir="$1/var/lib/dpkg" -W -f '${Package} ${Version}\n' "${SID_PACKAGES[@]}" 2>/dev/null
}

# Builds the root unless a complete one with these versions is cached.
sid_root() {
  if [ -f "$SID_ROOT/.complete" ]; then
    log "sid root cached: $SID_ROOT"
  else
    find_debootstrap
    local mirror build; mirror=$(host_mirror)
    build=$SID_ROOT.building.$$
    rm -rf "$build"; mkdir -p "$build"
    log "debootstrap --variant=minbase sid $build $mirror"
    "${DEBOOTSTRAP[@]}" --variant=minbase sid "$build" "$mirror" >"$CACHE/newest/debootstrap.log" 2>&1 ||
      { tail -30 "$CACHE/newest/debootstrap.log"; rm -rf "$build"; die "debootstrap failed"; }
    # No service starts from maintainer scripts inside the root.
    printf '#!/bin/sh\nexit 101\n' > "$build/usr/sbin/policy-rc.d"; chmod 755 "$build/usr/sbin/policy-rc.d"
    sid_mount -t proc proc "$build/proc"
    sid_mount --bind /dev "$build/dev"
    local pins=(libvirt-daemon-driver-qemu="$SID_LIBVIRT_VERSION" libvirt-daemon="$SID_LIBVIRT_VERSION"
                libvirt-clients="$SID_LIBVIRT_VERSION" qemu-system-x86="$SID_QEMU_VERSION")
    log "apt-get install --no-install-recommends ${pins[*]}"
    if ! chroot "$build" "${SID_APT[@]}" update >"$CACHE/newest/apt.log" 2>&1 ||
       ! chroot "$build" env DEBIAN_FRONTEND=noninteractive "${SID_APT[@]}" install --no-install-recommends "${pins[@]}" \
          >>"$CACHE/newest/apt.log" 2>&1; then
      tail -30 "$CACHE/newest/apt.log"; sid_umount_all; rm -rf "$build"
      die "apt-get install in the sid root failed (see above; SID_LIBVIRT_VERSION/SID_QEMU_VERSION pin the versions)"
    fi
    chroot "$build" apt-get clean
    sid_umount_all
    sid_versions "$build" > "$build/.complete"
    rm -rf "$SID_ROOT"; mv "$build" "$SID_ROOT"
    log "sid root built: $SID_ROOT ($(du -sh "$SID_ROOT" | cut -f1))"
  fi
  # The versions the lane runs (fail, never run something else).
  local v
  v=$(sid_versions "$SID_ROOT")
  grep -qx "libvirt-daemon $SID_LIBVIRT_VERSION" <<<"$v" || die "sid root: libvirt-daemon is not $SID_LIBVIRT_VERSION: $v"
  grep -qx "qemu-system-x86 $SID_QEMU_VERSION" <<<"$v" || die "sid root: qemu-system-x86 is not $SID_QEMU_VERSION: $v"
  write_qemu_wrapper
}

# The root's QEMU on the host, without chroot, through the root's own dynamic loader.
write_qemu_wrapper() {
  local r=$SID_ROOT tmp=$QEMU_WRAPPER.$$
  cat > "$tmp" <<WRAP
#!/bin/sh
# QEMU $SID_QEMU_VERSION from the Debian sid root $r, run on the host with the root's loader
# and libraries (written by ci/newest).
export QEMU_MODULE_DIR=$r/usr/lib/x86_64-linux-gnu/qemu
exec $r/lib64/ld-linux-x86-64.so.2 --library-path $r/usr/lib/x86_64-linux-gnu:$r/lib/x86_64-linux-gnu \\
  $r/usr/bin/qemu-system-x86_64 -L $r/usr/share/qemu -L $r/usr/share/seabios "\$@"
WRAP
  chmod 755 "$tmp"; mv "$tmp" "$QEMU_WRAPPER"
  local v
  v=$("$QEMU_WRAPPER" --version | sed -n 1p) || die "the QEMU wrapper $QEMU_WRAPPER does not run"
  [[ "$v" == *"version 11.1"* ]] || die "$QEMU_WRAPPER: unexpected version: $v"
  log "QEMU wrapper $QEMU_WRAPPER: $v"
}
