#!/usr/bin/env bash
# A cluster on this one machine, for `make test-cluster` and for trying the cluster path by hand:
#   munge; a one-node SLURM (slurmctld + slurmd, no cgroups); PostgreSQL with an `mlflow` role and
#   the databases `mlflow` (the tracking store) and `optuna` (shared Optuna studies); and
#   `mlflow server` on 127.0.0.1 backed by PostgreSQL, with an artifact folder the jobs share.
#
#   scripts/local_cluster.sh up       # start what is not running (twice is harmless); prints where
#   scripts/local_cluster.sh status   # what runs, with PIDs, and the lines to export
#   scripts/local_cluster.sh down     # stop, by PID, everything `up` started
#   scripts/local_cluster.sh restart-server   # stop and start `mlflow server` alone
#   eval "$(scripts/local_cluster.sh env)"   # SLURM_CONF and MLFLOW_TRACKING_URI for this shell
#
# Needs root and Debian's slurm-wlm, munge and postgresql (.ci/run installs them), and .venv with
# `.[cluster]` (make .venv/.installed-cluster). Everything, logs included, lives in $CLUSTER_DIR.
# Every daemon listens on 127.0.0.1 (slurmd on this host's name, which SLURM resolves for itself).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${CLUSTER_DIR:-/tmp/runner-cluster}
PY=${PYTHON:-$ROOT/.venv/bin/python}
MLFLOW_PORT=${MLFLOW_PORT:-5055}
PG_PORT=${PG_PORT:-5499}
SLURMCTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
# psycopg2 named: SQLAlchemy 2.1 takes a bare postgresql:// to mean psycopg 3
PG_URL="postgresql+psycopg2://mlflow:mlflow@127.0.0.1:$PG_PORT"
LOGS=$DIR/log
export SLURM_CONF=$DIR/slurm/slurm.conf

say() { printf '%s\n' "$*"; }
die() { printf 'local_cluster: %s\n' "$*" >&2; exit 1; }

pid_of() {  # the live PID recorded in a pid file, or nothing
  local file=$1 pid
  [[ -s $file ]] || return 1
  pid=$(head -n1 "$file")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

wait_for() {  # wait_for SECONDS DESCRIPTION LOG COMMAND...: poll until COMMAND succeeds
  local seconds=$1 what=$2 log=$3; shift 3
  local rc
  for _ in $(seq $((seconds * 4))); do
    rc=0; "$@" >/dev/null 2>&1 || rc=$?
    [[ $rc == 0 ]] && return 0
    [[ $rc == 2 ]] && break  # the daemon is gone: no use waiting
    sleep 0.25
  done
  say "local_cluster: $what did not come up; the end of $log:" >&2
  tail -n 20 "$log" >&2 || true
  exit 1
}

stop_pid() {  # stop_pid NAME PIDFILE [GROUP]: SIGTERM (the process group if GROUP), then SIGKILL
  local name=$1 file=$2 group=${3:-} pid target
  pid=$(pid_of "$file") || { rm -f "$file"; return 0; }
  target=$pid; [[ -n $group ]] && target=-$pid
  kill -TERM -- "$target" 2>/dev/null || true
  for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "$target" 2>/dev/null || true; fi
  [[ -n $group ]] && kill -KILL -- "-$pid" 2>/dev/null || true  # the server's workers too
  rm -f "$file"
  say "stopped $name (pid $pid)"
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1; }

# ---- munge: SLURM's authentication, with its own key and socket --------------------------------
up_munge() {
  mkdir -p "$DIR/munge"
  chmod 711 "$DIR/munge"  # jobs run as root here, but munge wants the socket reachable
  if pid=$(pid_of "$DIR/munge/munged.pid"); then say "munge: already running (pid $pid)"; return; fi
  [[ -s $DIR/munge/munge.key ]] || { dd if=/dev/urandom bs=1 count=1024 of="$DIR/munge/munge.key" 2>/dev/null; chmod 400 "$DIR/munge/munge.key"; }
  munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/munge/munged.pid" --seed-file="$DIR/munge/munged.seed" --log-file="$LOGS/munged.log"
  wait_for 10 munge "$LOGS/munged.log" munge -S "$DIR/munge/munge.socket" -n
  say "munge: started (pid $(pid_of "$DIR/munge/munged.pid")), log $LOGS/munged.log"
}

# ---- SLURM: one node, this machine's CPUs and memory ---------------------------------------------
write_slurm_conf() {
  local node host
  host=$(hostname -s)
  node=$(slurmd -C | head -n1)  # NodeName=HOST CPUs=.. Boards=.. ... RealMemory=..: read from the machine
  mkdir -p "$DIR/slurm/state" "$DIR/slurm/spool"
  cat > "$SLURM_CONF" <<EOF
# written by scripts/local_cluster.sh
ClusterName=runner
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/slurm/state
SlurmdSpoolDir=$DIR/slurm/spool
SlurmctldPidFile=$DIR/slurm/slurmctld.pid
SlurmdPidFile=$DIR/slurm/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# no cgroups in a container: processes tracked by parentage, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
# CPUs are what jobs consume (memory is not), so two 1-CPU jobs share a 2-CPU machine
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# seconds between SIGTERM and SIGKILL for a cancelled or timed-out job (SLURM's default)
KillWait=30
MinJobAge=600
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

up_slurm() {
  if pid=$(pid_of "$DIR/slurm/slurmctld.pid"); then say "slurmctld: already running (pid $pid)"
  else
    write_slurm_conf
    slurmctld -i >>"$LOGS/slurmctld.out" 2>&1 || die "slurmctld did not start; see $LOGS/slurmctld.log and $LOGS/slurmctld.out"
    wait_for 20 slurmctld "$LOGS/slurmctld.log" scontrol ping
    say "slurmctld: started (pid $(pid_of "$DIR/slurm/slurmctld.pid")), log $LOGS/slurmctld.log"
  fi
  if pid=$(pid_of "$DIR/slurm/slurmd.pid"); then say "slurmd: already running (pid $pid)"
  else
    slurmd >>"$LOGS/slurmd.out" 2>&1 || die "slurmd did not start; see $LOGS/slurmd.log and $LOGS/slurmd.out"
    wait_for 30 "slurmd (node idle)" "$LOGS/slurmd.log" node_idle
    say "slurmd: started (pid $(pid_of "$DIR/slurm/slurmd.pid")), log $LOGS/slurmd.log"
  fi
}

node_idle() { sinfo -h -o %t | grep -Eq '^(idle|mix|alloc)'; }

# ---- PostgreSQL: its own data folder, port and socket; role mlflow, databases mlflow and optuna ----
psql_root() { runuser -u postgres -- "$(pg_bin)/psql" -h "$DIR/pg" -p "$PG_PORT" -d postgres -qtAX "$@"; }

up_postgres() {
  local bin data=$DIR/pg/data
  bin=$(pg_bin); [[ -n $bin ]] || die "PostgreSQL is not installed (apt-get install postgresql)"
  mkdir -p "$DIR/pg"
  chown postgres: "$DIR/pg"
  if [[ -f $data/postmaster.pid ]] && pid=$(pid_of "$data/postmaster.pid"); then
    say "postgresql: already running (pid $pid)"
  else
    if [[ ! -f $data/PG_VERSION ]]; then
      runuser -u postgres -- "$bin/initdb" -D "$data" -U postgres --auth-local=peer \
        --auth-host=scram-sha-256 >"$LOGS/initdb.log" 2>&1 || die "initdb failed; see $LOGS/initdb.log"
    fi
    touch "$LOGS/postgresql.log"; chown postgres: "$LOGS/postgresql.log"
    runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$LOGS/postgresql.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$DIR/pg" \
      >/dev/null || die "PostgreSQL did not start; see $LOGS/postgresql.log"
    say "postgresql: started (pid $(pid_of "$data/postmaster.pid")) on 127.0.0.1:$PG_PORT, log $LOGS/postgresql.log"
  fi
  [[ $(psql_root -c "select 1 from pg_roles where rolname='mlflow'") == 1 ]] ||
    psql_root -c "create role mlflow login password 'mlflow'"
  for db in mlflow optuna; do
    [[ $(psql_root -c "select 1 from pg_database where datname='$db'") == 1 ]] ||
      psql_root -c "create database $db owner mlflow"
  done
}

# ---- mlflow server on 127.0.0.1, backed by PostgreSQL -------------------------------------------
healthy() {  # the server answers /health; a server that exited fails at once
  pid_of "$DIR/mlflow.pid" >/dev/null || { echo "exited" >&2; return 2; }
  "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$MLFLOW_PORT/health', timeout=2)"
}

up_mlflow() {
  if pid=$(pid_of "$DIR/mlflow.pid"); then say "mlflow server: already running (pid $pid)"; return; fi
  mkdir -p "$DIR/artifacts"
  # its own session, so that `down` stops the server and its workers as one process group
  setsid "$PY" -m mlflow server --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
    --backend-store-uri "$PG_URL/mlflow" --artifacts-destination "$DIR/artifacts" \
    >>"$LOGS/mlflow.log" 2>&1 </dev/null &
  echo $! >"$DIR/mlflow.pid"
  wait_for 120 "mlflow server" "$LOGS/mlflow.log" healthy
  say "mlflow server: started (pid $(pid_of "$DIR/mlflow.pid")) on http://127.0.0.1:$MLFLOW_PORT, log $LOGS/mlflow.log"
}

env_lines() {
  say "export SLURM_CONF=$SLURM_CONF"
  say "export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT"
  say "export OPTUNA_STORAGE=$PG_URL/optuna"
}

case ${1:-} in
  up)
    [[ $(id -u) == 0 ]] || die "run as root (SLURM's daemons and PostgreSQL's user switch need it)"
    mkdir -p "$LOGS"
    if [[ ${2:-} != --no-slurm ]]; then up_munge; up_slurm; fi
    up_postgres
    up_mlflow
    say "logs: $LOGS"
    env_lines
    ;;
  down)
    stop_pid "mlflow server" "$DIR/mlflow.pid" group
    if pid=$(pid_of "$DIR/pg/data/postmaster.pid" 2>/dev/null); then
      runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$DIR/pg/data" -m fast -w stop >/dev/null
      say "stopped postgresql (pid $pid)"
    fi
    stop_pid slurmd "$DIR/slurm/slurmd.pid"
    stop_pid slurmctld "$DIR/slurm/slurmctld.pid"
    stop_pid munged "$DIR/munge/munged.pid"
    ;;
  status)
    for f in munge/munged.pid slurm/slurmctld.pid slurm/slurmd.pid pg/data/postmaster.pid mlflow.pid; do
      if pid=$(pid_of "$DIR/$f" 2>/dev/null); then say "running: ${f%.pid} (pid $pid)"; else say "stopped: ${f%.pid}"; fi
    done
    say "logs: $LOGS"
    env_lines
    ;;
  restart-server)  # the tracking server alone, as for an upgrade; runs keep their data in PostgreSQL
    stop_pid "mlflow server" "$DIR/mlflow.pid" group
    up_mlflow
    ;;
  env) env_lines ;;
  *) die "usage: $0 up [--no-slurm] | down | status | env | restart-server" ;;
esac
