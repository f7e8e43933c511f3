#!/bin/sh
# snf-image helper VM, shim 2: /init2 on the read-only tools disk (PID 1
# after switch_root). Runs the helper executable as a child so that a crash
# of the helper is still reported, then always syncs and powers off.
# The host judges only the FIRST line of ttyS1, so if the helper already wrote
# its own ERROR line, the line written here is ignored.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
HELPER=/usr/lib/snf-image-helper/snf-image-helper
read -r cmdline </proc/cmdline
case " $cmdline " in *" quiet "*) mark() { :; } ;; *) mark() { read -r up _ </proc/uptime; echo "snf-image shim: $up s: $*" >/dev/console; } ;; esac
mark "/init2 started"

# the instance disks are hot-added to the virtio-scsi controller; virtio-rng feeds the guest's
# entropy pool. qemu_fw_cfg (the parameters) is loaded by the helper once it is woken: the VM
# may be saved while it waits and resumed for another run, with another document.
modprobe virtio_scsi 2>/dev/null || echo "snf-image shim: cannot load virtio_scsi" >/dev/console
modprobe sd_mod 2>/dev/null || echo "snf-image shim: cannot load sd_mod" >/dev/console
modprobe virtio_rng 2>/dev/null

mark "modules loaded, starting the helper"
"$HELPER" </dev/null
rc=$?
# exit 0 without a result line is judged by the host (no result = failure)
[ "$rc" -eq 0 ] || echo "ERROR: helper exited with code $rc" >/dev/ttyS1
sync
poweroff -f
