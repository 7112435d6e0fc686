#!/usr/bin/env bash
# Build the local fleet's host image: plain Debian 13 with systemd as PID 1, sshd and Python for
# Ansible, bootstrapped from Debian packages with mmdebstrap (no registry is needed). No service
# but sshd is baked in: the Ansible roles install everything, as on a cloud VM. The image holds
# no host key and no user: each container makes its own keys when sshd first starts, and
# docker/bootstrap-host gives it the environment's deploy user (what a cloud's user-data does). `docker import` cannot set
# a stop signal; containers are run with SIGRTMIN+3, which systemd takes as "shut down".
#   IMAGE=tally-host:trixie FORCE=1 docker/build-image.sh
set -euo pipefail

image=${IMAGE:-tally-host:trixie}
suite=${SUITE:-trixie}
packages=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,procps,less,openssh-server
here=$(cd "$(dirname "$0")" && pwd)
# The image is rebuilt when this script (its whole recipe) changes.
recipe=$(sha256sum "$here/build-image.sh" | cut -c1-16)

if [ -z "${FORCE:-}" ] && [ "$(docker image inspect -f '{{ index .Config.Labels "tally.recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
  echo "$image is up to date (recipe $recipe)"
  exit 0
fi

# Units that have nothing to do in a container, or fail there.
masked="getty@tty1.service console-getty.service systemd-udevd.service systemd-udev-trigger.service
  systemd-networkd-wait-online.service systemd-firstboot.service apt-daily.timer
  apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer systemd-modules-load.service
  sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount"

# Host keys are made on a container's first start (one set per host, never shared through the
# image), before sshd checks its configuration.
export sshd_keys='[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t'

echo "Building $image from Debian $suite packages (recipe $recipe)"
# The package lists stay in the image, so the roles' first `apt` (with cache_valid_time) finds
# them and refreshes them only when they are old.
mmdebstrap --variant=minbase --include="$packages" --skip=cleanup/apt/lists \
  --customize-hook='for unit in '"$(echo $masked)"'; do ln -sf /dev/null "$1/etc/systemd/system/$unit"; done' \
  --customize-hook='truncate -s 0 "$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"' \
  --customize-hook='ln -sf /lib/systemd/system/multi-user.target "$1/etc/systemd/system/default.target"' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --customize-hook='mkdir -p "$1/etc/systemd/system/ssh.service.d" && printf "%s\n" "$sshd_keys" >"$1/etc/systemd/system/ssh.service.d/host-keys.conf"' \
  "$suite" - |
  docker import \
    --change 'CMD ["/sbin/init"]' \
    --change 'ENV container=docker' \
    --change "LABEL tally.recipe=$recipe" \
    - "$image" >/dev/null
echo "Built $image"
