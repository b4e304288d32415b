#!/usr/bin/env bash
# Prove workflow/profiles/slurm on a real single-node SLURM cluster started on this machine.
#
#   sudo make slurm-test          (or: bash tests/slurm/run_slurm_test.sh, as root)
#
# 1. Installs Debian's slurmctld, slurmd, slurm-client and munge (--no-install-recommends) if
#    missing.
# 2. Writes a munge key and a slurm.conf into a fresh temporary directory (nothing under /etc is
#    used or changed), on free TCP ports, and starts munged, slurmctld and slurmd directly, in
#    the foreground of background jobs (no systemd), remembering their PIDs.
# 3. Runs the workflow on tests/slurm/config.yaml (4 tiles) through Snakemake's SLURM executor
#    plugin with workflow/profiles/slurm, then the same config locally (--cores 2), each in its
#    own copy of the workflow.
# 4. Checks that every SLURM job completed, that both runs produced the same files, and that
#    every raster (.tif) and table (.csv) is byte-identical (sha256).
# 5. Cancels its jobs and stops exactly the three daemons it started (by PID), on success,
#    failure or interrupt.
#
# Facts this script encodes (Debian SLURM 22.05, executor plugin 2.8):
# * DefMemPerCPU is set, or one job takes the whole node's memory and jobs run one at a time.
# * No accounting database here, so sacct fails and the plugin would never see jobs finish:
#   job status comes from squeue (--slurm-status-command squeue), which needs MinJobAge long
#   enough (3600 s) for finished jobs to stay listed.
# * Status checks every 2 s after 2 s (the plugin's defaults are 40 s and 10 s, right for a busy
#   cluster, slow for a toy one).
# * A hung Snakemake ignores SIGTERM: it runs under `timeout -k 30`.
# * --cores caps what one SLURM job asks for: a tile's group job runs ground and scenarios side
#   by side and would ask for 2 x threads CPUs, more than this 2-CPU node has (the job would
#   pend forever with reason PartitionConfig); with --cores 2 Snakemake runs them one after
#   the other inside the job.
#
# Environment: SLURM_TEST_TIMEOUT (s, default 900) per Snakemake run; KEEP=1 keeps the
# temporary directory (it is always kept, and printed, on failure).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$REPO/.venv/bin}"
TIMEOUT_S="${SLURM_TEST_TIMEOUT:-900}"
KEEP="${KEEP:-0}"

log() { printf '[slurm-test %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "FAILED: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root: it installs Debian packages and starts munged, slurmctld and slurmd"
[[ -x $BIN/snakemake ]] || die "$BIN/snakemake not found: run 'make setup' first"

# -- 1. packages ------------------------------------------------------------------------------
missing=()
for exe in munged slurmctld slurmd sbatch squeue; do
    command -v "$exe" >/dev/null || missing+=("$exe")
done
if ((${#missing[@]})); then
    log "installing slurmctld slurmd slurm-client munge (missing: ${missing[*]})"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null
fi

# -- 2. configuration -------------------------------------------------------------------------
T0=$(date +%s)
WORK="$(mktemp -d /tmp/permamap-slurm.XXXXXX)"
chmod 755 "$WORK"                       # munge clients must reach the socket directory
mkdir -m 700 "$WORK/munge"              # key, seed and log: root only
mkdir -p "$WORK/run" "$WORK/slurm/ctld" "$WORK/slurm/d"
MUNGE_SOCKET="$WORK/run/munge.socket"
export SLURM_CONF="$WORK/slurm/slurm.conf"

MUNGED_PID="" CTLD_PID="" SLURMD_PID="" OK=0
stop_pid() {  # stop_pid NAME PID: TERM, wait up to 15 s, then KILL; only this PID
    local name=$1 pid=$2
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || { log "stopped $name (pid $pid)"; return 0; }; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
    log "killed $name (pid $pid) after 15 s"
}
cleanup() {
    local rc=$?
    set +e
    if [[ -n $CTLD_PID ]] && kill -0 "$CTLD_PID" 2>/dev/null; then
        scancel --quiet --user="$(id -un)" 2>/dev/null   # jobs of this private cluster only
        sleep 1
    fi
    stop_pid slurmd "$SLURMD_PID"
    stop_pid slurmctld "$CTLD_PID"
    stop_pid munged "$MUNGED_PID"
    if [[ $OK == 1 && $KEEP != 1 ]]; then
        rm -rf "$WORK"
    else
        log "files kept in $WORK (slurm/*.log, munge/munged.log, */.snakemake/slurm_logs)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r PORT_CTLD PORT_D < <("$BIN/python" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)
HOST="$(hostname -s)"
NCPU="$(nproc)"
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))

cat >"$SLURM_CONF" <<EOF
# single-node test cluster written by tests/slurm/run_slurm_test.sh
ClusterName=permamap-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT_CTLD
SlurmdPort=$PORT_D
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$WORK/slurm/ctld
SlurmdSpoolDir=$WORK/slurm/d
SlurmctldPidFile=$WORK/run/slurmctld.pid
SlurmdPidFile=$WORK/run/slurmd.pid
SlurmctldLogFile=$WORK/slurm/slurmctld.log
SlurmdLogFile=$WORK/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default, a job without --mem gets the whole node's memory
DefMemPerCPU=1000
# finished jobs stay visible to squeue (the job-status command without accounting)
MinJobAge=3600
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

# -- 3. daemons -------------------------------------------------------------------------------
mungekey --create --keyfile="$WORK/munge/munge.key" 2>/dev/null \
    || { dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$WORK/munge/munge.key"; }
munged --foreground --key-file="$WORK/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$WORK/run/munged.pid" --seed-file="$WORK/munge/munged.seed" \
    --log-file="$WORK/munge/munged.log" >"$WORK/munge/munged.out" 2>&1 &
MUNGED_PID=$!
for _ in $(seq 50); do [[ -S $MUNGE_SOCKET ]] && break; sleep 0.2; done
munge -S "$MUNGE_SOCKET" -n | unmunge -S "$MUNGE_SOCKET" >/dev/null || die "munged did not start ($WORK/munge/munged.out)"
log "munged running (pid $MUNGED_PID)"

slurmctld -D -f "$SLURM_CONF" >"$WORK/slurm/slurmctld.out" 2>&1 &
CTLD_PID=$!
slurmd -D -f "$SLURM_CONF" >"$WORK/slurm/slurmd.out" 2>&1 &
SLURMD_PID=$!
state=""
for _ in $(seq 60); do
    state="$(sinfo -h -o %T 2>/dev/null | head -1)"
    [[ $state == idle ]] && break
    sleep 1
done
[[ $state == idle ]] || die "node not idle after 60 s (state '$state'; see $WORK/slurm/slurmctld.log, slurmd.log)"
log "SLURM up in $(( $(date +%s) - T0 )) s: slurmctld pid $CTLD_PID, slurmd pid $SLURMD_PID, node $HOST ($NCPU CPUs, $MEM_MB MB)"

# Inside a job, the jobstep plugin runs each rule with `srun` after removing every SLURM_*
# variable but the allocation's identity, SLURM_CONF included; real clusters find their
# configuration in /etc/slurm or by DNS, this private one only through SLURM_CONF. A wrapper
# first on PATH (sbatch exports PATH to the job) puts it back, so /etc stays untouched.
mkdir -p "$WORK/bin"
cat >"$WORK/bin/srun" <<EOF
#!/bin/sh
export SLURM_CONF="$SLURM_CONF"
exec $(command -v srun) "\$@"
EOF
chmod +x "$WORK/bin/srun"
export PATH="$WORK/bin:$PATH"

# -- 4. the workflow through SLURM and locally ------------------------------------------------
copy_workflow() {
    mkdir -p "$1"
    cp "$REPO/Snakefile" "$1/"
    for d in workflow config envs; do cp -r "$REPO/$d" "$1/$d"; done
    find "$1" -name __pycache__ -prune -exec rm -rf {} +
    cp "$REPO/tests/slurm/config.yaml" "$1/config/slurm_test.yaml"
}
copy_workflow "$WORK/slurm_run"
copy_workflow "$WORK/local_run"

log "workflow through the SLURM executor (profile workflow/profiles/slurm) ..."
t=$(date +%s)
(cd "$WORK/slurm_run" && timeout -k 30 "$TIMEOUT_S" "$BIN/snakemake" \
    --workflow-profile workflow/profiles/slurm --configfile config/slurm_test.yaml \
    --default-resources slurm_partition=debug runtime=30 mem_mb=1000 \
    --slurm-no-account --slurm-status-command squeue \
    --slurm-init-seconds-before-status-checks 2 --seconds-between-status-checks 2 \
    --cores "$NCPU" --latency-wait 5 --jobs 8 >"$WORK/slurm_run.log" 2>&1) \
    || { tail -40 "$WORK/slurm_run.log"; die "SLURM run failed or timed out (log: $WORK/slurm_run.log)"; }
SLURM_S=$(( $(date +%s) - t ))

jobs_total=$(squeue -h -t all -o '%i' | wc -l)
jobs_done=$(squeue -h -t COMPLETED -o '%i' | wc -l)
jobs_bad=$(squeue -h -t all -o '%T' | grep -cv '^COMPLETED$' || true)
log "SLURM run: $SLURM_S s, $jobs_done of $jobs_total SLURM jobs COMPLETED"
((jobs_total > 0)) || die "no job went through SLURM"
((jobs_bad == 0)) || { squeue -h -t all -o '%i %j %T %r'; die "$jobs_bad SLURM jobs did not complete"; }

log "the same config locally (--cores 2) ..."
t=$(date +%s)
(cd "$WORK/local_run" && timeout -k 30 "$TIMEOUT_S" "$BIN/snakemake" --cores 2 \
    --workflow-profile workflow/profiles/default --configfile config/slurm_test.yaml \
    >"$WORK/local_run.log" 2>&1) \
    || { tail -40 "$WORK/local_run.log"; die "local run failed (log: $WORK/local_run.log)"; }
log "local run: $(( $(date +%s) - t )) s"

# -- 5. compare -------------------------------------------------------------------------------
list() { (cd "$1/results" && find . -type f | sort); }
sums() { (cd "$1/results" && find . -type f \( -name '*.tif' -o -name '*.csv' \) -print0 | sort -z | xargs -0 sha256sum); }
diff <(list "$WORK/slurm_run") <(list "$WORK/local_run") >"$WORK/files.diff" \
    || { cat "$WORK/files.diff"; die "the SLURM and local runs produced different files"; }
diff <(sums "$WORK/slurm_run") <(sums "$WORK/local_run") >"$WORK/sums.diff" \
    || { cat "$WORK/sums.diff"; die "rasters or tables differ between the SLURM and local runs"; }
n_files=$(list "$WORK/slurm_run" | wc -l)
n_sums=$(sums "$WORK/slurm_run" | wc -l)
OK=1
log "PASSED: $n_files output files in both runs; $n_sums rasters and tables byte-identical; total $(( $(date +%s) - T0 )) s"
