#!/usr/bin/env bash
# A single-node SLURM cluster on this machine for tests/test_slurm.py: slurmctld, slurmd and
# slurmdbd (accounting, on a private MariaDB server), with partitions `cpu` and `gpu` and one GRES
# gpu backed by /dev/null (no GPU needed: SLURM still sets CUDA_VISIBLE_DEVICES for a job that
# asks for it). Debian packages: slurm-wlm, slurmdbd, munge, mariadb-server.
#
#   tests/slurm/setup.sh install   # apt-get install what is missing (root); exit 0 if installed
#   tests/slurm/setup.sh start     # install if missing, then start; prints SLURM_CONF=<file>
#   tests/slurm/setup.sh stop      # stop the daemons that `start` started
#   tests/slurm/setup.sh accounting off|on   # stop / restart slurmdbd (a cluster without accounting)
#
# Everything lives in $APT_SLURM_DIR (default /var/tmp/apt-slurm): configs, spool, logs, database.
# The daemons listen on 127.0.0.1 only, on ports of their own (not SLURM's defaults); munge is
# shared (started if not running). /etc/slurm/slurm.conf becomes a link to this cluster's file
# while it runs: commands inside a job find the config only there (the jobstep executor plugin
# drops SLURM_CONF from a job step's environment); a machine with a slurm.conf of its own there
# is left alone and the script exits with status 3, as it does where SLURM cannot be installed
# (not root, no apt-get, apt-get failing). Runs of this script must not overlap (tests/test_slurm.py holds a lock).
set -euo pipefail

DIR=${APT_SLURM_DIR:-/var/tmp/apt-slurm}
PACKAGES=(slurm-wlm slurmdbd slurm-client munge mariadb-server)
CTLD_PORT=${APT_SLURM_PORT:-16817}
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
DB_PORT=$((CTLD_PORT + 3))
NODE_MEM_MB=${APT_SLURM_NODE_MEM_MB:-4000}   # RealMemory of the node: a small site's node
NODE=aptnode
export SLURM_CONF=$DIR/etc/slurm.conf
SYSTEM_CONF=/etc/slurm/slurm.conf

log() { echo "slurm-setup: $*" >&2; }

missing() {
    local p out=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out+=("$p")
    done
    echo "${out[@]}"
}

install() {
    local todo
    todo=$(missing)
    [ -z "$todo" ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "cannot install $todo: needs root and apt-get (Debian/Ubuntu)"
        return 3
    fi
    log "installing $todo"
    local t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends $todo; } >&2; then
        log "cannot install $todo: apt-get failed (see above)"
        return 3
    fi
    log "installed in $((SECONDS - t0)) s"
}

wait_for() {   # wait_for SECONDS WHAT COMMAND...
    local n=$1 what=$2
    shift 2
    for _ in $(seq $((n * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    log "$what did not come up; logs in $DIR/log"
    tail -n 20 "$DIR"/log/*.log >&2 || true
    return 1
}

write_configs() {
    mkdir -p "$DIR"/{etc,log,run,spool/ctld,spool/d,db}
    local hw cpus_line
    # The node's CPU layout as slurmd sees it; memory set small on purpose.
    hw=$(slurmd -C | head -1)
    cpus_line=$(echo "$hw" | grep -o 'CPUs=.*ThreadsPerCore=[0-9]*')
    cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=apttest
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=300
KillWait=5
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/none
NodeName=$NODE NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 $cpus_line RealMemory=$NODE_MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/etc/gres.conf" <<EOF
AutoDetect=off
NodeName=$NODE Name=gpu File=/dev/null
EOF
    cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=aptslurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0
    fi
    log "starting munged"
    mkdir -p /run/munge && chown munge:munge /run/munge
    [ -f /etc/munge/munge.key ] || { /usr/sbin/mungekey --create 2>/dev/null || /usr/sbin/create-munge-key; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
    wait_for 10 munged sh -c 'munge -n | unmunge'
}

start_db() {
    if [ ! -d "$DIR/db/mysql" ]; then
        mariadb-install-db --no-defaults --datadir="$DIR/db" --user=root \
            --auth-root-authentication-method=normal --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1
    fi
    mariadbd --no-defaults --user=root --datadir="$DIR/db" --bind-address=127.0.0.1 \
        --port="$DB_PORT" --socket="$DIR/run/mariadb.sock" --pid-file="$DIR/run/mariadb.pid" \
        --log-error="$DIR/log/mariadb.log" --skip-log-bin >/dev/null 2>&1 &
    wait_for 30 mariadb mariadb --no-defaults -uroot --socket="$DIR/run/mariadb.sock" -e 'select 1'
    mariadb --no-defaults -uroot --socket="$DIR/run/mariadb.sock" -e \
        "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'aptslurm';
         CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'aptslurm';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

link_conf() {
    if [ -e "$SYSTEM_CONF" ] && [ ! -L "$SYSTEM_CONF" ]; then
        log "$SYSTEM_CONF exists (a SLURM of this machine's own): not starting a test cluster"
        return 3
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -sfn "$SLURM_CONF" "$SYSTEM_CONF"
}

start() {
    install
    if [ "$(id -u)" != 0 ]; then
        log "starting the test cluster needs root (its daemons run as root)"
        return 3
    fi
    stop 2>/dev/null || true
    write_configs
    link_conf
    start_munge
    start_db
    slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
    sacctmgr -i add cluster apttest >/dev/null 2>&1 || true
    slurmctld
    wait_for 30 slurmctld scontrol ping
    slurmd -N "$NODE"
    wait_for 30 "slurmd (node $NODE idle)" sh -c "sinfo -h -n $NODE -o %t | grep -q idle"
    log "up: $(sinfo --version), node $NODE ($(sinfo -h -n $NODE -o '%c CPUs, %m MB, %G' | head -1))"
    echo "SLURM_CONF=$SLURM_CONF"
}

stop_pid() {   # stop_pid NAME PIDFILE
    local f=$2 pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$f"
}

stop() {
    [ -f "$SLURM_CONF" ] && scancel --full -u "$(id -un)" >/dev/null 2>&1 || true
    stop_pid slurmd "$DIR/run/slurmd.pid"
    stop_pid slurmctld "$DIR/run/slurmctld.pid"
    stop_pid slurmdbd "$DIR/run/slurmdbd.pid"
    stop_pid mariadb "$DIR/run/mariadb.pid"
    if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$SLURM_CONF" ]; then
        rm -f "$SYSTEM_CONF"
    fi
}

accounting() {
    case "${1:-}" in
        off) stop_pid slurmdbd "$DIR/run/slurmdbd.pid" ;;
        on) slurmdbd && wait_for 30 slurmdbd sacctmgr -n list cluster ;;
        *) echo "usage: $0 accounting off|on" >&2; return 2 ;;
    esac
}

case "${1:-}" in
    install) install ;;
    accounting) accounting "${2:-}" ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 install|start|stop|accounting off|on" >&2; exit 2 ;;
esac
