#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the Slurm runner's integration tests (and for
# trying `--runner slurm` on a workstation): munge auth, slurmctld and slurmd on one host,
# proctrack/linuxproc and task/none (no cgroup setup needed), memory enforced per job, no
# accounting daemon. Needs root and Debian's slurm-wlm and munge packages (.ci/run installs
# them). Idempotent: a cluster already answering is left as it is.
#
#   bash tests/slurm/single-node.sh          start (or check) the cluster
#   bash tests/slurm/single-node.sh stop     stop its daemons
set -euo pipefail

conf_dir=/etc/slurm
state=/var/lib/llem-slurm
host=$(hostname -s)

if [ "${1:-start}" = stop ]; then
  pkill -x slurmd || true
  pkill -x slurmctld || true
  exit 0
fi

if scontrol ping >/dev/null 2>&1 && sinfo -h -o %T 2>/dev/null | grep -qv -e down -e drain; then
  echo "slurm: already up on $host"
  exit 0
fi

# munge: its directories belong to the munge user, and munged refuses to start otherwise.
mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null \
  || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
chmod 0700 /etc/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! munge -n >/dev/null 2>&1; then
  su -s /bin/sh munge -c "/usr/sbin/munged"
fi
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done

cpus=$(nproc)
# Leave the host 1 GiB; slurmd refuses a node whose RealMemory exceeds what it finds.
memory=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
mkdir -p "$conf_dir" "$state/ctld" "$state/d" /var/log/slurm
cat > "$conf_dir/slurm.conf.new" <<CONF
ClusterName=llem-test
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$(( memory / cpus ))
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
JobAcctGatherParams=OverMemoryKill
ReturnToService=2
MinJobAge=300
KillWait=10
SlurmdTimeout=30
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
mv "$conf_dir/slurm.conf.new" "$conf_dir/slurm.conf"

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 100); do
  if sinfo -h -o %T 2>/dev/null | grep -q -e idle -e mixed -e alloc; then
    echo "slurm: up on $host ($cpus CPUs, $memory MiB)"
    exit 0
  fi
  sleep 0.2
done
echo "slurm: the node did not come up; slurmctld and slurmd logs follow" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
