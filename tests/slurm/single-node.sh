#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the Slurm runner's integration tests (and for
# trying `--runner slurm` on a workstation): munge auth, slurmctld and slurmd on one host,
# proctrack/linuxproc and task/none (no cgroup setup needed), memory enforced per job, and
# accounting through slurmdbd and a local MariaDB when Debian's slurmdbd and mariadb-server are
# installed (as on most real clusters; without them, none). Needs root and Debian's slurm-wlm
# and munge packages (.ci/run installs them all). Idempotent: a cluster already answering is
# left as it is.
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

accounting=0
command -v slurmdbd >/dev/null 2>&1 && command -v mariadbd >/dev/null 2>&1 && accounting=1

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

if [ "$accounting" = 1 ]; then
  # MariaDB for slurmdbd: its own daemon (no init system needed), on the local socket.
  if ! mariadb -e 'select 1' >/dev/null 2>&1; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
    nohup su -s /bin/sh mysql -c "/usr/sbin/mariadbd --bind-address=127.0.0.1" \
      >/var/log/llem-mariadb.log 2>&1 &
    for _ in $(seq 100); do mariadb -e 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'llem-test';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  mkdir -p "$conf_dir" /var/log/slurm
  cat > "$conf_dir/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=llem-test
StorageLoc=slurm_acct_db
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
CONF
  chmod 600 "$conf_dir/slurmdbd.conf"
  pgrep -x slurmdbd >/dev/null || slurmdbd
  for _ in $(seq 100); do  # slurmdbd listens on 6819 once it has its database
    (exec 3<>/dev/tcp/127.0.0.1/6819) 2>/dev/null && break; sleep 0.2
  done
fi

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
$( [ "$accounting" = 1 ] && printf 'AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost' )
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

if [ "$accounting" = 1 ]; then
  sacctmgr -i -Q add cluster llem-test >/dev/null 2>&1 || true  # exists already: fine
fi
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 100); do
  if sinfo -h -o %T 2>/dev/null | grep -q -e idle -e mixed -e alloc; then
    echo "slurm: up on $host ($cpus CPUs, $memory MiB, accounting: $accounting)"
    exit 0
  fi
  sleep 0.2
done
echo "slurm: the node did not come up; slurmctld and slurmd logs follow" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
