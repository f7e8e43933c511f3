#!/bin/busybox sh
# snf-image helper VM, shim 1: /init of the small initramfs (PID 1).
# Mounts proc/sys/dev, loads the boot modules (order computed at build time),
# finds the read-only tools disk by its virtio serial, mounts it with tmpfs
# for the writable places and switch_roots into its /init2.
# On any failure: one "ERROR: ..." line on ttyS1 (the result channel), then
# power off. @TOOLS_DISK_SERIAL@ is filled in by the builder.
export PATH=/bin:/sbin

fail() {
  [ -e /dev/ttyS1 ] || mknod /dev/ttyS1 c 4 65 2>/dev/null
  echo "snf-image shim: ERROR: $*" >/dev/console 2>/dev/null
  echo "ERROR: $*" >/dev/ttyS1 2>/dev/null
  sync
  poweroff -f
  exit 1
}

mount -t proc proc /proc || fail "helper VM: cannot mount /proc"
mount -t sysfs sysfs /sys || fail "helper VM: cannot mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "helper VM: cannot mount /dev"
# HELPER_DEBUG (no "quiet" on the kernel command line): guest-clock marks on the console
read -r cmdline </proc/cmdline
case " $cmdline " in *" quiet "*) mark() { :; } ;; *) mark() { read -r up _ </proc/uptime; echo "snf-image shim: $up s: $*" >/dev/console; } ;; esac
mark "/init started"
# what bash's process substitution and scripts reading /dev/stdin expect (CUSTOM_TASK)
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr

while read -r ko; do
  insmod "/lib/modules/$ko" 2>/dev/null || echo "snf-image shim: cannot load ${ko##*/}" >/dev/console
done </lib/modules/boot.list
mark "boot modules loaded"

dev=
tries=0
while [ -z "$dev" ] && [ "$tries" -lt 100 ]; do
  for s in /sys/block/vd*/serial; do
    [ -r "$s" ] || continue
    if [ "$(cat "$s")" = "@TOOLS_DISK_SERIAL@" ]; then
      d=${s%/serial}
      dev=/dev/${d##*/}
      break
    fi
  done
  [ -n "$dev" ] || { tries=$((tries + 1)); sleep 0.1; }
done
[ -n "$dev" ] || fail "helper VM: tools disk (serial @TOOLS_DISK_SERIAL@) not found"

# Larger readahead: Bun's ~100 MiB executable and the tools are paged in from this disk, and
# every virtio request is a round trip to qemu's I/O thread. 1 MiB: faster wall time under
# load for +26 MiB qemu RSS (4 MiB: +50 MiB); see docs/benchmarks.md.
echo 1024 >"/sys/block/${dev#/dev/}/queue/read_ahead_kb" 2>/dev/null
mkdir -p /newroot
mount -t ext4 -o ro,noatime "$dev" /newroot || fail "helper VM: cannot mount the tools disk $dev"
[ -x /newroot/init2 ] || fail "helper VM: the tools disk has no /init2"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /newroot/tmp || fail "helper VM: cannot mount /tmp"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run || fail "helper VM: cannot mount /run"
mount -t tmpfs -o mode=0755 tmpfs /newroot/mnt || fail "helper VM: cannot mount /mnt"
mark "tools disk mounted"
for d in proc sys dev; do
  mount --move "/$d" "/newroot/$d" || fail "helper VM: cannot move /$d"
done
exec switch_root /newroot /init2
echo "ERROR: helper VM: switch_root failed" >/newroot/dev/ttyS1
poweroff -f
