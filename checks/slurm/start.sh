#!/usr/bin/env bash
# Start a throwaway single-node Slurm cluster (munged + slurmctld + slurmd, all as
# root) whose config, key, state, spool, logs and pid files all live in STATE_DIR.
#
#   checks/slurm/start.sh STATE_DIR     # idempotent; prints the exports to eval
#   eval "$(checks/slurm/start.sh /tmp/slurm | grep ^export)"
#   sbatch --wrap hostname; squeue; scontrol show job JOBID
#   checks/slurm/stop.sh STATE_DIR
#
# Nothing in /etc is used: clients and daemons read SLURM_CONF=STATE_DIR/slurm.conf,
# munge uses its own socket (AuthInfo=socket=...). Every daemon binds 127.0.0.1 only
# (CommunicationParameters=NoCtldInAddrAny,NoInAddrAny; the host name resolves to it).
# No accounting: the real sacct fails ("Slurm accounting storage is disabled"), so a
# finished job's state is in `scontrol show job` for MinJobAge=600 s and one line per
# job in STATE_DIR/jobcomp.txt; checks/slurm/bin/sacct (put first in PATH, printed
# below) answers submitit's sacct calls from scontrol, so job.state/done() work.
# Env knobs: SLURM_CTLD_PORT (6817), SLURMD_PORT (6818), SLURM_START_TIMEOUT (60 s),
# SLURM_CRED_EXPIRE (10 s; Slurm holds a requeued job that long, default 120 s).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
mkdir -p "$1" && S=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
NODE=$(hostname -s 2>/dev/null || echo localhost)
CTLD_PORT=${SLURM_CTLD_PORT:-6817} SLURMD_PORT=${SLURMD_PORT:-6818}
TIMEOUT=${SLURM_START_TIMEOUT:-60}
CRED_EXPIRE=${SLURM_CRED_EXPIRE:-10}  # also the delay before a requeued job may restart (default 120 s)

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
# The node address must be loopback, otherwise NoInAddrAny would bind a real interface.
addr=$(getent ahostsv4 "$NODE" | awk 'NR==1{print $1}')
case "$addr" in 127.*) ;; *) echo "error: $NODE resolves to '$addr', not 127.x; add '127.0.0.1 $NODE' to /etc/hosts" >&2; exit 1;; esac

running() { ps -o stat= -p "$1" 2>/dev/null | grep -qv Z; }  # zombies do not count
alive() { running "$(cat "$S/$1.pid" 2>/dev/null)"; }
mkdir -p "$S"/{munge,ctld,spool,log} && chmod 755 "$S/munge"
[ -s "$S/munge/munge.key" ] || { mungekey --create --keyfile="$S/munge/munge.key"; chmod 400 "$S/munge/munge.key"; }

MEM=$(( $(awk '/^MemTotal/{print $2}' /proc/meminfo) / 1024 * 8 / 10 ))  # MB, below what slurmd detects
cat > "$S/slurm.conf" <<EOF
ClusterName=local
SlurmctldHost=$NODE($addr)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$S/munge/munge.socket,cred_expire=$CRED_EXPIRE
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$S/ctld
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$S/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SchedulerParameters=batch_sched_delay=0,sched_interval=2  # start jobs within ~1 s
MailProg=/bin/true
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=5
NodeName=$NODE NodeAddr=$addr CPUs=$(nproc) RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$S/slurm.conf"

start() { "$@" || { echo "error: '$1' failed to start, see $S/log/$1.log" >&2; exit 1; }; }
# --force: munged otherwise refuses a socket path with a non-a+x parent (e.g. pytest tmp_path)
alive munged || start munged --force --socket="$S/munge/munge.socket" --key-file="$S/munge/munge.key" \
  --pid-file="$S/munged.pid" --log-file="$S/log/munged.log" --seed-file="$S/munge/seed"
alive slurmctld || start slurmctld
since=0; alive slurmd || { since=$(date +%s); start slurmd -N "$NODE"; }

# Ready = node idle and, if we just started slurmd, registered by it (with a reused
# STATE_DIR slurmctld shows the node idle from its saved state before slurmd is up).
ready() {
  sinfo -h -n "$NODE" -o %t 2>/dev/null | grep -qx idle || return 1
  local t; t=$(scontrol show node -o "$NODE" | sed -n 's/.*SlurmdStartTime=\([^ ]*\).*/\1/p')
  [ "$(date -d "$t" +%s 2>/dev/null || echo 0)" -ge "$since" ]
}

t0=$SECONDS
until ready; do
  for d in munged slurmctld slurmd; do  # e.g. "Address already in use": another cluster's ports
    (( SECONDS - t0 < 3 )) || alive $d || { echo "error: $d died: $(tail -n1 "$S/log/$d.log")" >&2; exit 1; }
  done
  if (( SECONDS - t0 > TIMEOUT )); then
    echo "error: node $NODE not idle after ${TIMEOUT}s; sinfo: $(sinfo -h -N -o '%N %t %E' 2>&1)" >&2
    echo "see $S/log/*.log" >&2; exit 1
  fi
  sleep 0.2
done
echo "slurm ready: node $NODE idle, partition debug"
echo "export SLURM_CONF=$S/slurm.conf"
echo "# checks/slurm/bin/sacct: a stand-in for submitit's sacct calls"
echo "export PATH=$HERE/bin:\$PATH"
