#!/bin/bash
# The llem/slurm-node entrypoint: munged with the cluster's key, then one Slurm daemon in the
# foreground (its log on stderr, the container's log).
#
#   slurm-node slurmctld          the controller
#   slurm-node slurmd NAME        the compute node NAME of slurm.conf
#
# Mounts: the key at /run/llem/munge.key (any owner; installed for the munge user, 0400) and
# the directory of the cluster's slurm.conf at /etc/slurm. The file may come after the start
# (it names the controller's address, known once the controller's container runs): the daemon
# waits up to a minute for it.
set -euo pipefail

install -o munge -g munge -m 0400 /run/llem/munge.key /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
chmod 0755 /run/munge
su -s /bin/sh munge -c /usr/sbin/munged
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done

for _ in $(seq 600); do [ -s /etc/slurm/slurm.conf ] && break; sleep 0.1; done
case "${1:-}" in
  slurmctld) exec slurmctld -D -i ;;
  slurmd) exec slurmd -D -N "${2:?slurmd needs the node name}" ;;
  *) echo "usage: slurm-node slurmctld | slurmd NAME" >&2; exit 2 ;;
esac
