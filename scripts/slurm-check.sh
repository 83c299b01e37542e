#!/usr/bin/env bash
# A sweep as a SLURM job array on a real one-node cluster started here (as root; CI runs it):
# installs Debian's SLURM and munge if missing, starts munged, slurmctld and slurmd, submits a
# digits sweep of 2 configs x 2 seeds x 2 epochs with `sweep --slurm --submit`, requeues one
# running task, and checks that all 4 runs finished, that the requeued task resumed and ended
# with a checkpoint byte-identical to an uninterrupted local run's (which also shows that the
# task trained on the one CPU it asked for), that an extra #SBATCH option and a setup line
# reached the tasks, and that `report` gives 2 rows with n = 2. Stops exactly the daemons it
# started. Needs only the xtask binary, Debian's packages and coreutils.
# Usage: scripts/slurm-check.sh   (AR_XTASK: the release xtask, default target/release/xtask)
set -euo pipefail
cd "$(dirname "$0")/.."

xtask=$(realpath "${AR_XTASK:-target/release/xtask}")
wait_s=${AR_SLURM_WAIT:-180}
fail() { echo "slurm-check: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (it installs packages and starts daemons)"
[ -x "$xtask" ] || fail "$xtask is not built (cargo build --release -p xtask)"

packages="slurmctld slurmd slurm-client munge"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  echo "slurm-check: installing $packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends $packages >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends $packages >/dev/null; } ||
    fail "could not install Debian's $packages; the SLURM check cannot run without them"
fi

scratch=$(mktemp -d /tmp/ar-slurm.XXXXXX)
pids=()
stop_daemons() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
show_logs() {
  for log in "$scratch"/*.log "$scratch"/runs/slurm/logs/*; do
    [ -f "$log" ] && { echo "---- $log"; tail -n 40 "$log"; }
  done
}
trap 'status=$?; [ $status = 0 ] || { show_logs; [ -z "${job:-}" ] || scancel "$job"; }; stop_daemons; rm -rf "$scratch"; exit $status' EXIT

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local limit=$1; shift
  local until=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $until ] || return 1
    sleep 0.2
  done
}

# munge, as the munge user so that $! is munged itself.
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
setpriv --reuid=munge --regid=munge --init-groups munged --foreground --force 2>"$scratch/munged.log" &
pids+=($!)
munge_ok() { local cred; cred=$(munge -n) && unmunge <<<"$cred"; }
wait_for 20 munge_ok || fail "munged did not start"

host=$(hostname -s)
getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >>/etc/hosts
node=$(slurmd -C | head -n 1)
mkdir -p "$scratch/state" "$scratch/spool"
cat >"$scratch/slurm.conf" <<EOF
ClusterName=ar-check
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=sched_interval=2,bf_interval=1
ReturnToService=2
MpiDefault=none
StateSaveLocation=$scratch/state
SlurmdSpoolDir=$scratch/spool
SlurmctldPidFile=$scratch/slurmctld.pid
SlurmdPidFile=$scratch/slurmd.pid
SlurmctldLogFile=$scratch/slurmctld.log
SlurmdLogFile=$scratch/slurmd.log
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$scratch/slurm.conf"
slurmctld -D -i >"$scratch/slurmctld.out.log" 2>&1 &
pids+=($!)
slurmd -D >"$scratch/slurmd.out.log" 2>&1 &
pids+=($!)
node_idle() { local s; s=$(sinfo -h -o %T) && [[ "$s" == idle* ]]; }
wait_for 60 node_idle || fail "the node did not come up (sinfo: $(sinfo -h 2>&1))"
echo "slurm-check: one-node cluster up ($(sinfo -h -o '%N %c CPUs %T'))"

# The sweep: an AR config slow enough (many Euler steps) to be requeued mid-run, and backprop.
mkdir -p "$scratch/configs"
printf 'algorithms = ["ar"]\nsolver = "euler"\nsteps = 40000\n' >"$scratch/configs/a-ar.toml"
printf 'algorithms = ["bp"]\n' >"$scratch/configs/b-bp.toml"
runs="$scratch/runs"
said=$("$xtask" sweep "$scratch/configs" --seeds 0..2 --epochs 2 --out "$runs" \
  --slurm --submit --binary "$xtask" --cpus-per-task 1 --time 0:10:00 \
  --sbatch comment=ar-slurm-check --setup 'echo "setup line ran on $(hostname -s)"')
echo "$said"
job=$(sed -n 's/^submitted job \([0-9]*\).*/\1/p' <<<"$said")
[ -n "$job" ] || fail "no job id in the output of sweep --slurm --submit"
comment=$(squeue -h -j "$job" -o %k | head -n 1)
[ "$comment" = ar-slurm-check ] || fail "the --sbatch comment reached the job as '$comment'"

# Requeue task 0 (a-ar, seed 0) once it has finished its first epoch and is into its second.
epoch_one_done() { [ "$(wc -l <"$runs/a-ar/seed-0/metrics.csv")" -ge 2 ]; }
wait_for "$wait_s" epoch_one_done || fail "task 0 did not finish an epoch in $wait_s s"
[ -e "$runs/a-ar/seed-0/sweep-done.json" ] && fail "task 0 ended before it could be requeued"
scontrol requeue "${job}_0"
echo "slurm-check: requeued task ${job}_0 in its second epoch"

queue_empty() { local q; q=$(squeue -h -j "$job") && [ -z "$q" ]; }
wait_for "$wait_s" queue_empty || fail "the array did not finish in $wait_s s ($(squeue -h -j "$job"))"

for run in a-ar/seed-0 a-ar/seed-1 b-bp/seed-0 b-bp/seed-1; do
  grep -q '"finished"' "$runs/$run/sweep-done.json" 2>/dev/null || fail "$run did not finish"
done
log="$runs/slurm/logs/${job}_0.out"
sed 's/^/  task 0 log: /' "$log"
grep -q "stopped" "$log" || fail "task 0 did not stop cleanly on the requeue's SIGTERM (see $log)"
grep -q "resuming in" "$log" || fail "task 0 did not resume after its requeue (see $log)"

grep -q "setup line ran on" "$log" || fail "the --setup line did not run in task 0 (see $log)"

# The same config trained here without interruption, on 1 thread as the task was (its
# SLURM_CPUS_PER_TASK): the final checkpoints must be the same file, byte for byte.
mkdir -p "$scratch/local-configs"
{ cat "$scratch/configs/a-ar.toml"; echo "threads = 1"; } >"$scratch/local-configs/a-ar.toml"
"$xtask" sweep "$scratch/local-configs/a-ar.toml" --seeds 0 --epochs 2 --out "$scratch/local" --no-estimate >/dev/null
cmp "$runs/a-ar/seed-0/checkpoints/ar.safetensors" "$scratch/local/a-ar/seed-0/checkpoints/ar.safetensors" ||
  fail "the requeued task's checkpoint differs from an uninterrupted run's"
echo "slurm-check: the requeued task's checkpoint equals an uninterrupted run's, byte for byte"

table=$("$xtask" report "$runs")
rows=$(grep -E '^\| (a-ar|b-bp) ' <<<"$table" || true)
[ "$(wc -l <<<"$rows")" = 2 ] || fail "report: expected 2 rows, got: $table"
ns=$(awk -F'|' '{gsub(/ /, "", $4); print $4}' <<<"$rows" | sort -u)
[ "$ns" = 2 ] || fail "report: expected n = 2 in both rows, got: $rows"
echo "slurm-check: 4 array tasks finished, 1 requeued and resumed byte-identical, report 2 rows n = 2"
