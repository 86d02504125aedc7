#!/usr/bin/env bash
# Stop the daemons that scripts/slurm/up.sh started (recorded in
# /run/slurm/specc-started), in reverse order: slurmd, slurmctld, slurmdbd,
# mariadbd, munged. Daemons up.sh found already running are left alone.
#   --all   stop all five (found through their pid files), whoever started them
# State (/var/spool/slurm*, the accounting DB) is kept; packages are kept.
set -euo pipefail

PROG="scripts/slurm/down.sh"
RUNDIR=/run/slurm
STARTED_FILE=$RUNDIR/specc-started
T0=$(date +%s%N)

ALL=0
case "${1:-}" in
    --all) ALL=1 ;;
    "") ;;
    *) echo "usage: $0 [--all]" >&2; exit 2 ;;
esac

[ "$(id -u)" = 0 ] || { echo "$PROG: ERROR: must run as root" >&2; exit 1; }

pidfile_of() {
    case "$1" in
        slurmd) echo "$RUNDIR/slurmd.pid" ;;
        slurmctld) echo "$RUNDIR/slurmctld.pid" ;;
        slurmdbd) echo "$RUNDIR/slurmdbd.pid" ;;
        mariadbd) echo /run/mysqld/mysqld.pid ;;
        munged) echo /run/munge/munged.pid ;;
    esac
}

# stop NAME: TERM the pid in its pid file (only if that pid really is NAME),
# wait up to 20 s, then KILL
stop() {
    local name=$1 pidfile pid i
    pidfile=$(pidfile_of "$name")
    [ -s "$pidfile" ] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || { rm -f "$pidfile"; return 1; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        [ -d "/proc/$pid" ] || break
        sleep 0.2
    done
    if [ -d "/proc/$pid" ]; then
        echo "$PROG: $name (pid $pid) ignored SIGTERM for 20 s, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    return 0
}

stopped=()
for name in slurmd slurmctld slurmdbd mariadbd munged; do
    if [ "$ALL" = 1 ] || grep -qx "$name" "$STARTED_FILE" 2>/dev/null; then
        if stop "$name"; then stopped+=("$name"); fi
    fi
done
rm -f "$STARTED_FILE"

ms=$(( ($(date +%s%N) - T0) / 1000000 ))
echo "SLURM cluster down: stopped ${stopped[*]:-nothing} in $(awk -v m="$ms" 'BEGIN{printf "%.1f", m/1000}')s"
