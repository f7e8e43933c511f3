#!/usr/bin/env bash
# ganeti-cluster.sh -- snf-image's single-node Ganeti 3.0 test cluster.
#
#   ganeti-cluster.sh up       install ganeti (Debian), configure, init, start (idempotent)
#   ganeti-cluster.sh status   print cluster/daemon state; exit 0 only when the cluster answers
#   ganeti-cluster.sh down     remove instances, destroy the cluster, stop all daemons,
#                              restore hostname and /etc/hosts (packages stay installed)
#
# Built for machines without systemd as PID 1, without device-mapper, with only
# loopback addresses: node 127.0.1.1, cluster 127.0.2.1, fake hypervisor,
# file + blockdev disk templates, an ipolicy that accepts tiny disks and no NICs.
# The OS search path includes /srv/ganeti/os (install providers there).
# SNF_GNT_HYPERVISORS=fake,kvm also enables kvm (installs qemu-system-x86).
# Logs: /var/log/ganeti/ (os/ has one file per OS script run).
set -euo pipefail

NODE=node1.snf.test
NODE_IP=127.0.1.1
CLUSTER=cluster1.snf.test
CLUSTER_IP=127.0.2.1
HYPERVISORS=${SNF_GNT_HYPERVISORS:-fake}
TEMPLATES=file,blockdev
FILE_DIR=/srv/ganeti/file-storage

STATE=/var/lib/snf-ganeti-test          # ours: saved hostname, markers
DU=/usr/lib/ganeti/daemon-util
CONF=/var/lib/ganeti/config.data
MIP=/etc/ganeti/scripts/master-ip-setup
FSP=/etc/ganeti/file-storage-paths
MARK_BEGIN="# >>> snf-image test cluster"
MARK_END="# <<< snf-image test cluster"

# Daemons inherit a fixed environment (noded passes it on to export/import
# scripts) and bind to the node's loopback address instead of 0.0.0.0.
ENVC=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
      EXTRA_NODED_ARGS="-b $NODE_IP" EXTRA_CONFD_ARGS="-b $NODE_IP"
      EXTRA_MOND_ARGS="-b $NODE_IP" EXTRA_METAD_ARGS="-b $NODE_IP")

say() { printf '[ganeti-cluster] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install_ganeti() {
  local want=()
  have_pkg ganeti || want+=(ganeti)
  [[ ,$HYPERVISORS, == *,kvm,* ]] && ! have_pkg qemu-system-x86 && want+=(qemu-system-x86)
  [ ${#want[@]} = 0 ] && return
  local t=$SECONDS
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  # no recommends: they would pull xen, drbd-utils, qemu, debootstrap
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${want[@]}" >/dev/null
  say "installed ${want[*]} in $((SECONDS - t)) s"
}

set_names() {
  mkdir -p "$STATE"
  [ -f "$STATE/hostname" ] || hostname > "$STATE/hostname"
  local body
  body=$(sed "/^$MARK_BEGIN\$/,/^$MARK_END\$/d" /etc/hosts)
  printf '%s\n%s\n%s %s %s\n%s %s %s\n%s\n' "$body" "$MARK_BEGIN" \
    "$NODE_IP" "$NODE" "${NODE%%.*}" "$CLUSTER_IP" "$CLUSTER" "${CLUSTER%%.*}" "$MARK_END" > /etc/hosts
  # Ganeti takes the node name from the kernel hostname + forward/reverse lookup.
  [ "$(hostname)" = "$NODE" ] || hostname "$NODE"
  local fq
  fq=$(python3 -c 'import socket; print(socket.getfqdn())')
  [ "$fq" = "$NODE" ] || die "getfqdn() gives '$fq', not $NODE; check /etc/hosts"
}

restore_names() {
  local body
  body=$(sed "/^$MARK_BEGIN\$/,/^$MARK_END\$/d" /etc/hosts)
  printf '%s\n' "$body" > /etc/hosts
  if [ -f "$STATE/hostname" ]; then hostname "$(cat "$STATE/hostname")"; fi
}

ganeti_files() {
  mkdir -p "$FILE_DIR" /srv/ganeti/os "$(dirname "$MIP")" "$STATE"
  if [ ! -f "$FSP" ]; then touch "$STATE/made-fsp"; fi
  grep -qx "$FILE_DIR" "$FSP" 2>/dev/null || echo "$FILE_DIR" >> "$FSP"
  # every 127.x address already answers on lo: the master IP needs no setup
  printf '#!/bin/sh\nexit 0\n' > "$MIP"
  chmod 755 "$MIP"
}

pidfiles_clean() {
  local f pid
  for f in /var/run/ganeti/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q ganeti &&
       [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
      continue
    fi
    rm -f "$f"     # stale: start-stop-daemon refuses root-owned pid files of dead daemons
  done
  return 0
}

daemons_up() {
  local d
  for d in ganeti-noded ganeti-wconfd ganeti-luxid; do "$DU" check "$d" >/dev/null 2>&1 || return 1; done
}

start_daemons() {
  "$DU" stop-all >/dev/null 2>&1 || true     # start-all refuses a partly running set
  pidfiles_clean
  "${ENVC[@]}" "$DU" start-all
}

ready() {
  local i
  for i in $(seq 1 60); do
    gnt-cluster getmaster >/dev/null 2>&1 && gnt-node list >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

# Stock gnt-cluster init refuses a node IP in 127/8 and sees any 127.x cluster
# IP as "already active" (lo answers RST). Run the real code with these two
# init-time checks relaxed in this one process; nothing on disk changes.
INIT_PY='
import sys
sys.path.insert(0, "/usr/share/ganeti/default")
from ganeti import netutils
netutils.IP4Address.IsLoopback = classmethod(lambda cls, a: False)
_ping = netutils.TcpPing
def ping(target, port, timeout=10, live_port_needed=False, source=None):
  return _ping(target, port, timeout=timeout, source=source,
               live_port_needed=live_port_needed or str(target).startswith("127."))
netutils.TcpPing = ping
import ganeti.client.gnt_cluster as m
sys.argv[0] = "gnt-cluster"
sys.exit(m.Main())
'

init_or_start() {
  if [ -f "$CONF" ]; then
    local name
    name=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cluster"]["cluster_name"])' "$CONF" 2>/dev/null || true)
    [ "$name" = "$CLUSTER" ] || die "another cluster ('$name') is initialised here; not touching it"
    if daemons_up; then say "cluster already up"; else say "cluster present, starting daemons"; start_daemons; fi
    return
  fi
  # leftovers of a half-done init make InitCluster refuse
  local d
  for d in /var/lib/ganeti /var/lib/ganeti/queue /var/lib/ganeti/queue/archive; do
    [ -d "$d" ] && find "$d" -maxdepth 1 -mindepth 1 ! -type d -delete
  done
  pidfiles_clean
  local t=$SECONDS extra=()
  [[ ,$HYPERVISORS, == *,kvm,* ]] && extra=(-H "kvm:kernel_path=,initrd_path=")
  "${ENVC[@]}" python3 -c "$INIT_PY" init \
    --enabled-hypervisors="$HYPERVISORS" --enabled-disk-templates="$TEMPLATES" \
    --file-storage-dir="$FILE_DIR" --master-netdev=lo --master-netmask=32 \
    --use-external-mip-script=yes --no-etc-hosts --no-ssh-init \
    --nic-parameters=mode=routed,link=100 \
    --ipolicy-bounds-specs="min:disk-size=1,disk-count=1,nic-count=0,memory-size=32,cpu-count=1,spindle-use=1/max:disk-size=1048576,disk-count=16,nic-count=8,memory-size=32768,cpu-count=8,spindle-use=12" \
    "${extra[@]}" "$CLUSTER"
  say "gnt-cluster init: $((SECONDS - t)) s"
}

cmd_up() {
  local t=$SECONDS
  install_ganeti
  set_names
  ganeti_files
  init_or_start
  ready || die "cluster not answering after 60 s; see /var/log/ganeti/"
  say "up in $((SECONDS - t)) s: cluster $CLUSTER ($CLUSTER_IP), node $NODE ($NODE_IP), hv $HYPERVISORS"
}

cmd_status() {
  echo "hostname: $(hostname)"
  if [ -f "$CONF" ] && daemons_up && gnt-cluster getmaster >/dev/null 2>&1; then
    gnt-cluster info | grep -E 'Cluster name|Master node|Enabled hypervisors|OS search path' || true
    gnt-instance list
    return 0
  fi
  echo "no running cluster"
  return 1
}

cmd_down() {
  local t=$SECONDS
  if [ -f "$CONF" ]; then
    daemons_up || start_daemons || true
    if ready; then
      local i
      for i in $(gnt-instance list --no-headers -o name 2>/dev/null); do
        gnt-instance remove -f --ignore-failures "$i" >/dev/null 2>&1 || true
      done
      gnt-cluster destroy --yes-do-it || true
    fi
  fi
  "$DU" stop-all >/dev/null 2>&1 || true
  pidfiles_clean
  if [ -f "$CONF" ]; then
    say "destroy left the config behind; removing Ganeti state by hand"
    rm -f /var/lib/ganeti/config.data* /var/lib/ganeti/ssconf_* /var/lib/ganeti/*.pem \
      /var/lib/ganeti/known_hosts /var/lib/ganeti/cluster-domain-secret /var/lib/ganeti/queue/* 2>/dev/null || true
  fi
  rm -rf /var/lib/ganeti/export/* "${FILE_DIR:?}"/*
  rm -f "$MIP"
  [ -f "$STATE/made-fsp" ] && rm -f "$FSP"
  rmdir "$FILE_DIR" /srv/ganeti/os /srv/ganeti 2>/dev/null || true   # only if empty
  restore_names
  rm -rf "$STATE"
  local left=""
  for f in /var/run/ganeti/*.pid; do [ -e "$f" ] && left+=" $(basename "$f")"; done
  [ -z "$left" ] || { say "still running:$left"; return 1; }
  say "down in $((SECONDS - t)) s"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) die "usage: $0 up|down|status" ;;
esac
