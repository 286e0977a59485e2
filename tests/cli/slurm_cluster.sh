# shellcheck shell=bash
# A private single-node Slurm cluster for tests: its own munged (own key,
# socket and pid file), slurmctld and slurmd, with every path and both ports
# its own, so that it touches nothing outside its folder and cannot clash
# with a system Slurm or with another test's cluster. Sourced, never run on
# its own (hence not named test_*). Needs root (slurmd starts jobs as their
# submitting user), munged and Slurm's daemons (Debian: munge slurm-wlm).
#
#   slurm_cluster_start DIR   creates DIR, starts the daemons, waits until the
#                             node is idle, exports SLURM_CONF (every client
#                             command, srun inside jobs included, must see it)
#                             and sets SLURM_CLUSTER_STARTED (slurmctld's start,
#                             nanoseconds since the epoch)
#   slurm_cluster_stop DIR    cancels the cluster's jobs and stops its daemons
#                             (safe to call twice, or after a failed start)
#
# What it takes on Debian 12 (Slurm 22.05, no systemd, no cgroups):
# proctrack/pgid (linuxproc lets a job's background processes escape),
# task/none and no accounting (no cgroups or database here), MailProg
# /bin/true (no mail program), MpiDefault=pmix (Debian's Open MPI has no
# PMI-2). AuthInfo cred_expire is also the delay before a requeued job may
# start again (120 s by default; 5 s here makes it ~10 s); sched_interval
# makes the scheduler look at that requeued job again soon after the delay.

# slurm_cluster__fail MESSAGE: prints MESSAGE and the daemons' logs and
# returns 1 (callers run under set -e, or check the status).
slurm_cluster__fail() {
    echo "slurm_cluster: $1" >&2
    local log
    for log in "$SLURM_CLUSTER_DIR"/log/*.log; do
        [ -f "$log" ] || continue
        echo "--- $log (last 20 lines)" >&2
        tail -n 20 "$log" >&2
    done
    return 1
}

# slurm_cluster__port_free PORT: no TCP socket (IPv4 or IPv6, any state) is
# bound to local port PORT. Read from /proc/net/tcp* (local address in
# column 2 as HEXADDR:HEXPORT) so that no extra tool is needed.
slurm_cluster__port_free() {
    local hex table tables=()
    hex=$(printf '%04X' "$1")
    for table in /proc/net/tcp /proc/net/tcp6; do
        [ -r "$table" ] && tables+=("$table")
    done
    ((${#tables[@]})) || return 0
    ! awk -v port="$hex" 'FNR > 1 { split($2, a, ":"); if (a[2] == port) found = 1 } END { exit !found }' \
        "${tables[@]}"
}

# slurm_cluster__pick_ports: prints two adjacent free TCP ports below the
# kernel's ephemeral range (so no outgoing connection can be holding them),
# starting from a random point so that clusters of concurrent tests differ.
slurm_cluster__pick_ports() {
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + (RANDOM % 6000) * 2))
        if slurm_cluster__port_free "$port" && slurm_cluster__port_free $((port + 1)); then
            echo "$port $((port + 1))"
            return 0
        fi
    done
    echo "slurm_cluster: no two free ports found in 20000..32000" >&2
    return 1
}

# slurm_cluster__pid_alive PIDFILE NAME: the pid in PIDFILE is a live (not
# zombie) process whose command line mentions NAME. PID 1 here may reap late,
# so a daemon that has exited can linger as a zombie: that counts as stopped.
slurm_cluster__pid_alive() {
    local pidfile=$1 name=$2 pid state
    pid=$(tr -dc '0-9' 2>/dev/null < "$pidfile") || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$name" || return 1
    # Field 3 of /proc/PID/stat is the state; the command (field 2) is in
    # parentheses and may contain spaces, so read what follows the last ')'.
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# slurm_cluster__stop_daemon PIDFILE NAME: SIGTERM, then SIGKILL after 10 s.
slurm_cluster__stop_daemon() {
    local pidfile=$1 name=$2 pid
    pid=$(tr -dc '0-9' 2>/dev/null < "$pidfile") || return 0
    slurm_cluster__pid_alive "$pidfile" "$name" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        slurm_cluster__pid_alive "$pidfile" "$name" || return 0
        sleep 0.1
    done
    echo "slurm_cluster: $name (pid $pid) ignored SIGTERM for 10 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
}

slurm_cluster_start() {
    local dir=${1:?usage: slurm_cluster_start DIR}
    SLURM_CLUSTER_DIR=$dir
    local cmd
    for cmd in munged slurmctld slurmd scontrol sinfo squeue scancel runuser; do
        command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
        command -v "$cmd" >/dev/null 2>&1 || { echo "slurm_cluster: $cmd not found" >&2; return 1; }
    done
    id munge >/dev/null 2>&1 || { echo "slurm_cluster: no 'munge' user (install munge)" >&2; return 1; }

    # Leftovers of an earlier run in the same folder (a killed test) go first.
    slurm_cluster_stop "$dir"
    rm -rf "$dir"
    mkdir -p "$dir"/{state,spool,log,run,munge,tmp}
    dir=$(cd "$dir" && pwd)
    SLURM_CLUSTER_DIR=$dir

    # munged refuses keys and folders that others can read or write, and runs
    # as the munge user, which must own its folder.
    chown munge: "$dir/munge"
    chmod 0700 "$dir/munge"
    head -c 1024 /dev/urandom > "$dir/munge/munge.key"
    chown munge: "$dir/munge/munge.key"
    chmod 0400 "$dir/munge/munge.key"
    local socket=$dir/munge/munge.socket
    runuser -u munge -- munged --force --socket="$socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed" ||
        { cat "$dir/munge/munged.log" >&2 2>/dev/null; echo "slurm_cluster: munged did not start" >&2; return 1; }

    local ports host cpus free_mb
    ports=$(slurm_cluster__pick_ports) || return 1
    host=$(hostname -s)
    cpus=$(nproc)
    free_mb=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
    cat > "$dir/slurm.conf" <<EOF
# Written by tests/cli/slurm_cluster.sh for a private test cluster.
ClusterName=mgtest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${ports% *}
SlurmdPort=${ports#* }
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket,cred_expire=5
StateSaveLocation=$dir/state
# The PMIx plugin puts each step's folder (spmix_appdir_UID_JOB.STEP) under
# TmpFS: under the default /tmp, clusters numbering their jobs from 1 alike
# (two at once, or one after a killed one) collide and steps fail to launch.
TmpFS=$dir/tmp
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
MpiDefault=pmix
MailProg=/bin/true
JobRequeue=1
ReturnToService=2
KillWait=5
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$((free_mb * 9 / 10)) State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$dir/slurm.conf

    # -c: start with an empty job table even if the state folder were reused.
    # slurmctld does its periodic work (time limits, --signal warnings) every
    # 30 s counted from its start; tests that depend on it read this time.
    SLURM_CLUSTER_STARTED=$(date +%s%N)
    export SLURM_CLUSTER_STARTED
    slurmctld -c || { slurm_cluster__fail "slurmctld did not start"; return 1; }
    slurmd || { slurm_cluster__fail "slurmd did not start"; return 1; }

    for _ in $(seq 1 300); do
        if slurm_cluster__pid_alive "$dir/run/slurmctld.pid" slurmctld &&
           slurm_cluster__pid_alive "$dir/run/slurmd.pid" slurmd &&
           slurm_cluster__pid_alive "$dir/munge/munged.pid" munged &&
           scontrol ping 2>/dev/null | grep -q "is UP" &&
           [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ]; then
            return 0
        fi
        sleep 0.1
    done
    slurm_cluster__fail "the cluster in $dir did not come up within 30 s (scontrol ping: $(scontrol ping 2>&1); sinfo: $(sinfo -h -N 2>&1))"
}

slurm_cluster_stop() {
    local dir=${1:?usage: slurm_cluster_stop DIR}
    [ -d "$dir" ] || return 0
    # Jobs first, while slurmctld and slurmd still run to end their steps:
    # processes of a job left running would outlive the cluster.
    if [ -f "$dir/slurm.conf" ] && slurm_cluster__pid_alive "$dir/run/slurmctld.pid" slurmctld; then
        local jobs
        jobs=$(SLURM_CONF=$dir/slurm.conf squeue -h -o %i 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086  # one job id per word
            SLURM_CONF=$dir/slurm.conf scancel $jobs 2>/dev/null || true
            for _ in $(seq 1 150); do
                [ -z "$(SLURM_CONF=$dir/slurm.conf squeue -h -t R,CG,S -o %i 2>/dev/null)" ] && break
                sleep 0.1
            done
        fi
    fi
    slurm_cluster__stop_daemon "$dir/run/slurmd.pid" slurmd
    slurm_cluster__stop_daemon "$dir/run/slurmctld.pid" slurmctld
    slurm_cluster__stop_daemon "$dir/munge/munged.pid" munged
}
