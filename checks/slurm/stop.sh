#!/usr/bin/env bash
# Stop the cluster that checks/slurm/start.sh STATE_DIR started:
#   checks/slurm/stop.sh STATE_DIR
# Cancels every job, then stops slurmd, slurmctld and munged via their pid files, and
# kills any slurmstepd or job process left from this STATE_DIR. STATE_DIR is kept
# (rm -rf it for a fresh cluster; a restart otherwise recovers the saved job state).
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
S=$(cd "$1" 2>/dev/null && pwd) || { echo "no such dir: $1" >&2; exit 0; }
export SLURM_CONF="$S/slurm.conf"
running() { ps -o stat= -p "$1" 2>/dev/null | grep -qv Z; }  # zombies do not count
alive() { running "$(cat "$S/$1.pid" 2>/dev/null)"; }

# Cancel jobs while slurmctld and slurmd are still up to kill the job processes.
if alive slurmctld; then
  jobs=$(squeue -h -o %A 2>/dev/null)
  [ -n "$jobs" ] && scancel $jobs
  for _ in $(seq 30); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.5; done
fi

stop() {  # stop NAME...: SIGTERM the pids in NAME.pid, SIGKILL what is left after 10 s
  local pids=() d p
  for d in "$@"; do alive "$d" && pids+=("$(cat "$S/$d.pid")"); done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill "${pids[@]}"
  for p in "${pids[@]}"; do
    for _ in $(seq 40); do running "$p" || break; sleep 0.25; done
    running "$p" && { echo "pid $p ignored SIGTERM, killing" >&2; kill -9 "$p"; }
  done
  for d in "$@"; do rm -f "$S/$d.pid"; done
}
stop slurmd slurmctld; stop munged   # munged last: the slurm daemons authenticate on the way out

# Safety net if the daemons died first: slurmstepd daemonizes away from slurmd, so find
# it and the job processes by the SLURM_CONF they inherited (jobs also have SLURM_JOB_ID).
for p in /proc/[0-9]*; do
  pid=${p#/proc/}; [ "$pid" != $$ ] || continue
  env=$(tr '\0' '\n' 2>/dev/null < "$p/environ") || continue
  grep -qxF "SLURM_CONF=$S/slurm.conf" <<<"$env" || continue
  [ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ] || grep -q '^SLURM_JOB_ID=' <<<"$env" || continue
  echo "killing leftover $(cat "$p/comm" 2>/dev/null) $pid" >&2; kill -9 "$pid" 2>/dev/null
done
echo "slurm stopped ($S)"
