#!/usr/bin/env bash
# A real one-node Slurm cluster on localhost, for CI: runs a small sweep as a
# Slurm job array (`host sweep emit slurm` + `sbatch --wait`) and checks that
# every job finished and that the collected results equal those of a
# single-process run (`host sweep all`).
#
# Usage: tools/slurm/ci-slurm.sh PATH/TO/host
#
# Needs root (it starts munged, slurmctld and slurmd itself, no systemd).
# Installs Debian's slurm-wlm and munge with apt-get when slurmctld is missing.
# Everything else (configuration, keys, state, logs, sockets, results) lives in
# a temporary folder that is removed at exit; the daemons are always stopped.
# Environment: SLURM_CI_KEEP=1 keeps the temporary folder (for debugging);
# SLURM_CI_PORT (default 6817) is the slurmctld port, slurmd uses the next one.
set -euo pipefail

die() {
    echo "ci-slurm: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: $0 PATH/TO/host (the built host binary, e.g. target/release/host)"
[ -x "$1" ] || die "$1: not an executable; build it first (cargo build --release)"
HOST="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
[ -d "$REPO/plugins" ] || die "$REPO/plugins: no such folder (run this script from a checkout of the repository)"
[ "$(id -u)" -eq 0 ] || die "must run as root (it starts munged, slurmctld and slurmd)"

# The first line of a log that looks like an error (else its first line).
first() { grep -m 1 -i 'error' "$1" || head -n 1 "$1"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

T0=$(now)
# --- packages -------------------------------------------------------------
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    echo "ci-slurm: installing slurm-wlm and munge (apt-get)..."
    export DEBIAN_FRONTEND=noninteractive
    out=$(apt-get update -qq 2>&1) || die "apt-get update failed: $(echo "$out" | grep -m 1 -E '^(E|W):' || true)"
    out=$(apt-get install -y -qq --no-install-recommends slurm-wlm munge 2>&1) ||
        die "apt-get install slurm-wlm munge failed: $(echo "$out" | grep -m 1 -E '^E:' || true)"
fi
for c in munged slurmctld slurmd sbatch sinfo squeue scancel; do
    command -v "$c" >/dev/null 2>&1 || die "$c not found after installing slurm-wlm and munge"
done
T_APT=$(now)

# --- temporary folder and cleanup -----------------------------------------
T="$(mktemp -d /tmp/ci-slurm.XXXXXX)"
chmod 700 "$T"
cleanup() {
    local rc=$?
    set +e
    trap '' PIPE INT TERM # finish the cleanup even when the output is gone or on a second ^C
    if [ -f "$T/slurm.conf" ] && [ -f "$T/slurmctld.pid" ]; then
        SLURM_CONF="$T/slurm.conf" timeout 10 scancel --full --quiet --user=root >/dev/null 2>&1
    fi
    # TERM to all three at once (each takes 1-2 s to stop), then KILL what is left after 10 s.
    local pids="" pid
    for d in slurmd slurmctld munged; do
        pid="$(cat "$T/$d.pid" 2>/dev/null)"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null && pids="$pids $pid"
        fi
    done
    for _ in $(seq 100); do
        local alive=""
        for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive="$alive $pid"; done
        pids="$alive"
        [ -z "$pids" ] && break
        sleep 0.1
    done
    for pid in $pids; do kill -9 "$pid" 2>/dev/null; done
    if [ "$rc" -ne 0 ]; then
        for f in munged.log slurmctld.log slurmd.log; do
            [ -f "$T/$f" ] && { echo "--- last lines of $f:" >&2; tail -n 15 "$T/$f" >&2; }
        done
        for f in "$T"/slurm-results/logs/*.out; do
            [ -f "$f" ] && { echo "--- $f:" >&2; tail -n 15 "$f" >&2; }
        done
    fi
    if [ "${SLURM_CI_KEEP:-0}" = 1 ]; then
        echo "ci-slurm: kept $T" >&2
    else
        rm -rf "$T"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- munge ----------------------------------------------------------------
# A fresh key of our own (the system key in /etc/munge is left alone).
dd if=/dev/urandom of="$T/munge.key" bs=1 count=1024 status=none
chmod 400 "$T/munge.key"
touch "$T/munged.seed"
chmod 600 "$T/munged.seed"
munged --force --socket="$T/munge.sock" --key-file="$T/munge.key" --pid-file="$T/munged.pid" \
    --seed-file="$T/munged.seed" --log-file="$T/munged.log" ||
    die "munged did not start (its log follows)"
for _ in $(seq 50); do [ -S "$T/munge.sock" ] && break; sleep 0.1; done
[ -S "$T/munge.sock" ] || die "munged socket $T/munge.sock did not appear"

# --- slurm.conf -----------------------------------------------------------
CPUS="$(nproc)"
MEM_MB=$(awk '/^MemTotal:/ { m = int($2 / 1024) - 512; if (m < 256) m = 256; print m }' /proc/meminfo)
PORT="${SLURM_CI_PORT:-6817}"
mkdir -p "$T/state" "$T/spool"
cat >"$T/slurm.conf" <<EOF
ClusterName=ci
SlurmctldHost=localhost
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge.sock
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=localhost CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=ci Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
# No cgroups are used (proctrack/linuxproc, task/none), but slurmd 22.05 still
# initialises a cgroup plugin; autodetect picks v1 or v2 from /sys/fs/cgroup.
cat >"$T/cgroup.conf" <<EOF
CgroupPlugin=autodetect
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF
export SLURM_CONF="$T/slurm.conf"

# --- daemons --------------------------------------------------------------
slurmctld -i -f "$T/slurm.conf" || die "slurmctld did not start (its log follows)"
slurmd -N localhost -f "$T/slurm.conf" || die "slurmd did not start (its log follows)"
state=""
for _ in $(seq 120); do
    state="$(sinfo -h -n localhost -o %T 2>/dev/null || true)"
    [ "$state" = idle ] && break
    sleep 0.5
done
[ "$state" = idle ] || die "node localhost not idle after 60 s (sinfo state: '${state:-none}')"
T_UP=$(now)

# --- the experiment -------------------------------------------------------
mkdir -p "$T/exp"
cat >"$T/exp/ci.toml" <<EOF
name = "ci-slurm"
plugins = ["$REPO/plugins"]

[gmse]
distributions = ["gaussian"]
shape = "64x1024"
samples = 1048576
seed = 0

[[formats]]
preset = ["int4", "e2m1", "nvfp4"]
EOF
cd "$T/exp"
"$HOST" sweep plan ci.toml --results "$T/slurm-results" >"$T/plan.log" 2>&1 ||
    die "host sweep plan failed: $(first "$T/plan.log")"
mkdir -p "$T/slurm-results/logs"
"$HOST" sweep emit slurm ci.toml --results "$T/slurm-results" --cpus 1 --mem 512M --time 00:10:00 \
    >"$T/job.sbatch" 2>"$T/emit.log" || die "host sweep emit slurm failed: $(first "$T/emit.log")"
JOBS=$(sed -n 's/^#SBATCH --array=0-\([0-9]*\).*/\1/p' "$T/job.sbatch")
[ -n "$JOBS" ] || die "no #SBATCH --array line in the emitted script $T/job.sbatch"
JOBS=$((JOBS + 1))
JOBID=$(sbatch --parsable "$T/job.sbatch" 2>"$T/sbatch.log") || die "sbatch failed: $(first "$T/sbatch.log")"
JOBID=${JOBID%%;*}
# Poll (sbatch --wait polls every few seconds; this job takes about one).
waited=0
while [ -n "$(squeue -h -j "$JOBID" -o %i 2>/dev/null)" ]; do
    [ "$waited" -lt 1200 ] || die "array job $JOBID not finished after 300 s: $(squeue -h -j "$JOBID" -o '%i %T %R' | head -n 3 | tr '\n' ' ')"
    sleep 0.25
    waited=$((waited + 1))
done
STATES=$(scontrol -o show job "$JOBID" | sed -n 's/.* JobState=\([A-Z_]*\) .*/\1/p' | sort | uniq -c | tr -s ' \n' ' ')
[ "$(scontrol -o show job "$JOBID" | grep -c ' JobState=COMPLETED ')" -eq "$JOBS" ] ||
    die "array job $JOBID: expected $JOBS tasks COMPLETED, got:$STATES"
T_RUN=$(now)

"$HOST" sweep status ci.toml --results "$T/slurm-results" --json >"$T/status.json" 2>"$T/status.log" ||
    die "host sweep status failed: $(first "$T/status.log")"
"$HOST" sweep collect ci.toml --results "$T/slurm-results" >"$T/collect.log" 2>&1 ||
    die "host sweep collect failed: $(first "$T/collect.log")"

# --- the same experiment in one process -----------------------------------
"$HOST" sweep all ci.toml --results "$T/single-results" >"$T/all.log" 2>&1 ||
    die "host sweep all failed: $(first "$T/all.log")"
T_ONE=$(now)

# --- checks ---------------------------------------------------------------
# Top-level counters of the pretty-printed JSON (two-space indent).
count() { sed -n "s/^  \"$1\": \([0-9]*\),\{0,1\}\$/\1/p" "$T/status.json"; }
TOTAL=$(count total)
DONE=$(count done)
[ -n "$TOTAL" ] && [ -n "$DONE" ] || die "host sweep status --json: no total/done counters in $T/status.json"
[ "$TOTAL" -eq "$JOBS" ] || die "host sweep status: $TOTAL jobs planned but the array had $JOBS tasks"
[ "$DONE" -eq "$TOTAL" ] ||
    die "host sweep status after the array: $DONE of $TOTAL jobs done ($(count failed) failed, $(count running) running, $(count pending) pending)"
cmp -s "$T/slurm-results/results.csv" "$T/single-results/results.csv" ||
    die "results.csv differs between the Slurm run and the single-process run: $(diff "$T/slurm-results/results.csv" "$T/single-results/results.csv" | head -n 3 | tr '\n' ' ')"
ROWS=$(($(wc -l <"$T/slurm-results/results.csv") - 1))
[ "$ROWS" -eq "$JOBS" ] || die "results.csv has $ROWS rows for $JOBS jobs"

echo "ci-slurm: PASS: $JOBS array tasks on a one-node Slurm cluster, $ROWS result rows identical to a single-process run" \
    "(packages $(secs "$T0" "$T_APT") s, cluster up $(secs "$T_APT" "$T_UP") s, array run $(secs "$T_UP" "$T_RUN") s," \
    "single run + checks $(secs "$T_RUN" "$T_ONE") s, total $(secs "$T0" "$(now)") s)"
