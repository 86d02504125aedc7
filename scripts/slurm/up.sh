#!/usr/bin/env bash
# Start a single-node SLURM test cluster (with accounting, so `sacct` works) on
# this machine. Idempotent: installs only missing packages, starts only daemons
# that are not running, restarts a slurm daemon only when its config changed.
# Needs root and no systemd. See scripts/slurm/README.md.
#
# Environment:
#   SPECC_SLURM_FRESH=1     stop slurmctld/slurmd and wipe their state first
#                           (job ids restart at 1; accounting DB is kept)
#   SPECC_SLURM_SLOTS=N     job slots advertised for the node (default: max(8, nproc))
#   SPECC_SLURM_WAIT_S=N    how long to wait for the cluster to answer (default 90)
#   SPECC_SLURM_CLUSTER=X   ClusterName (default specc)
set -euo pipefail

T0=$(date +%s%N)
PROG="scripts/slurm/up.sh"
CLUSTER=${SPECC_SLURM_CLUSTER:-specc}
WAIT_S=${SPECC_SLURM_WAIT_S:-90}
ETC=/etc/slurm
LOGDIR=/var/log/slurm
RUNDIR=/run/slurm
STARTED_FILE=$RUNDIR/specc-started   # daemons this script started (read by down.sh)
PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
MYSQL_SOCK=/run/mysqld/mysqld.sock
STARTED=()

say() { echo "$PROG: $*" >&2; }
die() {
    echo "$PROG: ERROR: $*" >&2
    echo "$PROG: logs are in $LOGDIR/ (slurmctld.log slurmd.log slurmdbd.log mariadbd.log)" >&2
    exit 1
}
elapsed() { echo $(( ($(date +%s%N) - T0) / 1000000 )) | awk '{printf "%.1f", $1/1000}'; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"

# one up.sh at a time (two concurrent runs would both start daemons)
mkdir -p /run/lock
exec 9>/run/lock/specc-slurm-up.lock
flock -w 300 9 || die "another scripts/slurm/up.sh held /run/lock/specc-slurm-up.lock for 300s"

# ---------------------------------------------------------------- packages
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]} (apt-get, --no-install-recommends) ..."
    mkdir -p "$LOGDIR"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" 9>&- >"$LOGDIR/apt-install.log" 2>&1; then
        say "apt-get install failed, running apt-get update and retrying ..."
        { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
            >>"$LOGDIR/apt-install.log" 2>&1 || die "apt-get install failed, see $LOGDIR/apt-install.log"
    fi
fi

# ------------------------------------------------------------- helpers
# pid_alive PIDFILE COMM: the pid in PIDFILE is alive and is the program COMM
pid_alive() {
    local pidfile=$1 comm=$2 pid
    [ -s "$pidfile" ] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]
}

# stop_pidfile PIDFILE COMM: TERM the daemon, wait (bounded) for it to exit, then KILL
stop_pidfile() {
    local pidfile=$1 comm=$2 pid i
    pid_alive "$pidfile" "$comm" || return 0
    pid=$(tr -dc '0-9' <"$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        [ -d "/proc/$pid" ] || break
        sleep 0.2
    done
    if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
    rm -f "$pidfile"
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds
wait_for() {
    local secs=$1 what=$2 deadline
    shift 2
    deadline=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || die "$what did not come up within ${secs}s"
        sleep 0.3
    done
}

# write_if_changed PATH MODE: write stdin to PATH when different; returns 0 if it changed
write_if_changed() {
    local path=$1 mode=$2 tmp
    tmp=$(mktemp "$path.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
        chmod "$mode" "$path"
        return 1
    fi
    mv -f "$tmp" "$path"
    return 0
}

mark_started() {
    STARTED+=("$1")
    grep -qx "$1" "$STARTED_FILE" 2>/dev/null || echo "$1" >>"$STARTED_FILE"
}

# ------------------------------------------------------------ directories
install -d -m 755 "$ETC" "$LOGDIR" "$RUNDIR" /var/spool/slurmctld /var/spool/slurmd
install -d -m 755 -o munge -g munge /run/munge
install -d -m 700 -o munge -g munge /var/lib/munge /var/log/munge /etc/munge
install -d -m 755 -o mysql -g mysql /run/mysqld

# --------------------------------------------------------------- configs
NODE=$(hostname -s)
NCPU=$(nproc)
SLOTS=${SPECC_SLURM_SLOTS:-$(( NCPU > 8 ? NCPU : 8 ))}
MEM_MB=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)
[ -n "$MEM_MB" ] || MEM_MB=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)
REAL_MEM=$(( MEM_MB * 9 / 10 ))

DB_PASS=$(sed -n 's/^StoragePass=//p' "$ETC/slurmdbd.conf" 2>/dev/null || true)
[ -n "$DB_PASS" ] || DB_PASS=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

SLURM_CONF_CHANGED=0
write_if_changed "$ETC/slurm.conf" 644 <<EOF && SLURM_CONF_CHANGED=1
# Written by scripts/slurm/up.sh (single-node test cluster, no cgroups). Edits are overwritten.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
# default credential lifetime (120 s) delays the restart of a requeued job
AuthInfo=cred_expire=10
MailProg=/bin/true
MpiDefault=none
# cgroup-free: no cgroup.conf needed
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# short passes, else requeued/dependent jobs wait for the 30/60 s default passes
SchedulerParameters=bf_interval=2,sched_interval=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmdTimeout=60
Waittime=0
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$RUNDIR/slurmctld.pid
SlurmdPidFile=$RUNDIR/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
# advertise more job slots than cores ($NCPU) so a DAG of small jobs runs concurrently
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$SLOTS RealMemory=$REAL_MEM State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

DBD_CONF_CHANGED=0
write_if_changed "$ETC/slurmdbd.conf" 600 <<EOF && DBD_CONF_CHANGED=1
# Written by scripts/slurm/up.sh. Must stay mode 600.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$LOGDIR/slurmdbd.log
PidFile=$RUNDIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$DB_PASS
EOF

# ----------------------------------------------------------------- munge
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key >/dev/null
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key

munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged 9>&- >>"$LOGDIR/munged.out" 2>&1 || die "munged failed to start (see /var/log/munge/munged.log)"
    wait_for 20 munged munge_ok
    mark_started munged
fi

# --------------------------------------------------------------- mariadb
mysql_ok() { mariadb-admin --socket="$MYSQL_SOCK" ping; }
if ! mysql_ok >/dev/null 2>&1; then
    if [ ! -d /var/lib/mysql/mysql ]; then
        install -d -m 755 -o mysql -g mysql /var/lib/mysql
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db \
            9>&- >>"$LOGDIR/mariadbd.log" 2>&1 || die "mariadb-install-db failed"
    fi
    # mariadbd does not daemonise itself
    setsid /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql \
        --socket="$MYSQL_SOCK" --pid-file=/run/mysqld/mysqld.pid \
        --bind-address=127.0.0.1 --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 \
        </dev/null 9>&- >>"$LOGDIR/mariadbd.log" 2>&1 &
    wait_for 60 mariadbd mysql_ok
    mark_started mariadbd
fi
mariadb --socket="$MYSQL_SOCK" -u root >/dev/null <<EOF || die "could not create the slurm accounting database/user"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF

# --------------------------------------------------------------- slurmdbd
dbd_ok() { sacctmgr -n -P show cluster format=cluster; }
if [ "$DBD_CONF_CHANGED" = 1 ] && pid_alive "$RUNDIR/slurmdbd.pid" slurmdbd; then
    say "slurmdbd.conf changed: restarting slurmdbd"
    stop_pidfile "$RUNDIR/slurmdbd.pid" slurmdbd
fi
if ! pid_alive "$RUNDIR/slurmdbd.pid" slurmdbd; then
    slurmdbd 9>&- >>"$LOGDIR/slurmdbd.out" 2>&1 || die "slurmdbd failed to start"
    mark_started slurmdbd
fi
wait_for 60 slurmdbd dbd_ok

# ---------------------------------------------------- slurmctld + slurmd
if [ "${SPECC_SLURM_FRESH:-0}" = 1 ] || [ "$SLURM_CONF_CHANGED" = 1 ]; then
    if pid_alive "$RUNDIR/slurmd.pid" slurmd || pid_alive "$RUNDIR/slurmctld.pid" slurmctld; then
        # `scontrol reconfigure` does not apply node changes: restart both
        say "restarting slurmctld + slurmd ($([ "${SPECC_SLURM_FRESH:-0}" = 1 ] && echo SPECC_SLURM_FRESH=1 || echo slurm.conf changed))"
        stop_pidfile "$RUNDIR/slurmd.pid" slurmd
        stop_pidfile "$RUNDIR/slurmctld.pid" slurmctld
    fi
fi
if [ "${SPECC_SLURM_FRESH:-0}" = 1 ]; then
    say "SPECC_SLURM_FRESH=1: wiping /var/spool/slurmctld and /var/spool/slurmd (job ids restart at 1)"
    find /var/spool/slurmctld /var/spool/slurmd -mindepth 1 -delete
fi
if ! pid_alive "$RUNDIR/slurmctld.pid" slurmctld; then
    slurmctld 9>&- >>"$LOGDIR/slurmctld.out" 2>&1 || die "slurmctld failed to start"
    mark_started slurmctld
fi
wait_for 30 slurmctld scontrol ping
if ! pid_alive "$RUNDIR/slurmd.pid" slurmd; then
    slurmd 9>&- >>"$LOGDIR/slurmd.out" 2>&1 || die "slurmd failed to start"
    mark_started slurmd
    wait_for 15 "slurmd (pid file $RUNDIR/slurmd.pid)" pid_alive "$RUNDIR/slurmd.pid" slurmd
fi

# ------------------------------------------------------------- readiness
node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1; }
deadline=$(( $(date +%s) + WAIT_S ))
resumed=0
while :; do
    # sinfo keeps showing a node idle for up to SlurmdTimeout after its slurmd died
    for d in slurmctld slurmd slurmdbd; do
        pid_alive "$RUNDIR/$d.pid" "$d" || die "$d is not running (exited right after start?): see $LOGDIR/$d.log and $LOGDIR/$d.out"
    done
    st=$(node_state || true)
    case "$st" in
        idle|mixed|allocated|completing) sacct -n -X -S now >/dev/null 2>&1 && break ;;
        down*|drain*|drained*)
            if [ "$resumed" = 0 ]; then
                scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
                resumed=1
            fi ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        die "cluster not ready after ${WAIT_S}s: node '$NODE' state='${st:-unknown}'; sacct: $(sacct -n -X -S now 2>&1 | head -n1)"
    fi
    sleep 0.5
done

started=${STARTED[*]:-none (already running)}
echo "SLURM cluster up: node $NODE $st, $SLOTS slots on $NCPU cores, accounting OK, cluster '$CLUSTER' (started: $started) in $(elapsed)s"
