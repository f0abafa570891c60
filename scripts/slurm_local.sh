#!/usr/bin/env bash
# A one-node Slurm on this machine (slurmctld + slurmd on localhost), for `pytest -m slurm` and
# for trying `legw sweep --launcher slurm` without a cluster. Needs root and Debian's packages:
#
#   apt-get install -y slurm-wlm munge
#   scripts/slurm_local.sh          # start (idempotent); prints sinfo when the node is idle
#   scripts/slurm_local.sh stop     # stop slurmd, slurmctld and munged started here
#
# Containers have no systemd and often no cgroup delegation: processes are tracked by their
# parent ids (proctrack/linuxproc) and tasks are not bound (task/none); no accounting database
# (sacct reports nothing; use squeue). Memory is not a consumable resource (CR_CPU), so jobs
# share the node's memory and only its CPUs limit how many run at once.
set -euo pipefail

if [[ "${1:-start}" == stop ]]; then
    for daemon in slurmd slurmctld munged; do
        pid=$(pgrep -x "$daemon" || true)
        [[ -n "$pid" ]] && kill $pid && echo "stopped $daemon ($pid)"
    done
    exit 0
fi

[[ $(id -u) == 0 ]] || { echo "slurm_local.sh: run as root" >&2; exit 2; }
command -v slurmctld >/dev/null && command -v munged >/dev/null || {
    echo "slurm_local.sh: install the Debian packages first: apt-get install -y slurm-wlm munge" >&2
    exit 2
}

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 ))

# munge: one key, its daemon
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
[[ -s /etc/munge/munge.key ]] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=legw-local
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd   # logs a harmless PMIx plugin error on Debian 12

for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
        sinfo
        exit 0
    fi
    sleep 1
done
echo "slurm_local.sh: the node did not come up idle; see /var/log/slurm/*.log" >&2
sinfo >&2 || true
exit 1
