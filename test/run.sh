#!/bin/bash
# Set up a fresh Debian 12 machine (idempotent) and run one job:
#   bash test/run.sh demo    deploy a small Debian image onto a file disk and show the result
#   bash test/run.sh test    every test (unit, integration, boot, Ganeti e2e)
#   bash test/run.sh fast    unit tests only
#   bash test/run.sh setup   only set up (packages, Bun, dependencies, build)
set -euo pipefail
cd "$(dirname "$0")/.."
job=${1:-test}
BUN_VERSION=1.4.5
DEBIAN_PACKAGES=(
  qemu-system-x86 qemu-utils           # the helper VM (and qemu-img for tests)
  busybox-static cpio kmod xz-utils    # helper initramfs, kernel modules, vmlinux extraction
  e2fsprogs fdisk gdisk util-linux xfsprogs btrfs-progs ntfs-3g dosfstools  # helper tools
  openssh-client whois syslinux-common zstd gzip   # ssh-keygen, mkpasswd, MBR code, decompressors
  debootstrap binutils expect socat curl ca-certificates lintian  # test images, harnesses, package checks
  libhivex-bin                         # tests: build SYSTEM hives (hivexsh) and read them back (hivexget)
  linux-source-6.1 linux-headers-amd64 make gcc   # the helper's ufs.ko with UFS write (*BSD images)
  makefs sleuthkit                     # *BSD test images (FFS) and reading them back
  gpgv gnupg                           # IMAGE_VERIFY (gpgv), signed sums made in tests (gpg)
)

log() { printf '[setup %(%T)T] %s\n' -1 "$*"; }

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  [[ $p == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
fi

if ! command -v bun >/dev/null || [[ $(bun --version) != "$BUN_VERSION" ]]; then
  log "installing Bun $BUN_VERSION from npm"
  npm install -g --silent "bun@$BUN_VERSION" >/dev/null
fi
BUN=$(command -v bun)

log "installing dependencies"
"$BUN" install --frozen-lockfile >/dev/null

log "building (host, helper, OS definition, helper VM image)"
"$BUN" run build.ts

case "$job" in
  setup) ;;
  demo) exec "$BUN" run test/demo.ts ;;
  fast) exec "$BUN" test test/unit ;;
  test) exec "$BUN" test --timeout 900000 test/unit test/integration test/e2e ;;
  *) echo "usage: $0 demo|test|fast|setup" >&2; exit 2 ;;
esac
