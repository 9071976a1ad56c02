#!/usr/bin/env bash
# A one-node SLURM on this machine (for tests and CI): installs Debian's slurm-wlm and munge if missing, writes
# /etc/slurm/slurm.conf for one node on localhost (state, spool, logs under $SLURM_LOCAL_DIR), starts munged,
# slurmctld and slurmd as root, and waits until `sinfo` shows the node idle. Idempotent: with the node already
# up it changes nothing. Needs root (CI containers run as root). Exit 0 when the node is idle, 1 otherwise.
set -euo pipefail

STATE="${SLURM_LOCAL_DIR:-/tmp/cxrres-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by cxrres scripts/slurm-local.sh"
PARTITION="${SLURM_LOCAL_PARTITION:-cpu}"

say() { echo "slurm-local: $*"; }
fail() { echo "slurm-local: $*" >&2; exit 1; }
node_state() { sinfo --noheader --partition="$PARTITION" --format=%T 2>/dev/null | head -n1 | tr -d '*~#'; }

[ "$(id -u)" -eq 0 ] || fail "must run as root (starts munged, slurmctld and slurmd)"

host="$(hostname -s)"
cpus="$(nproc)"
mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"  # leave 10 % to the system
render_conf() {
cat <<EOF
$MARK
ClusterName=cxrres-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# a job without --mem gets its share of memory per core (not the whole node), so tasks run side by side
DefMemPerCPU=$(( mem_mb / cpus ))
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# finished jobs stay visible to scontrol for an hour (there is no slurmdbd, so no sacct)
MinJobAge=3600
ReturnToService=2
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

if command -v sinfo >/dev/null && [ "$(render_conf)" = "$(cat "$CONF" 2>/dev/null)" ] && [ "$(node_state)" = idle ]; then
  say "node $(hostname -s) already idle in partition $PARTITION (nothing to do)"
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  started=$(date +%s)
  say "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  say "installed in $(( $(date +%s) - started )) s"
fi

if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  fail "$CONF exists and was not written by this script; not touching a real cluster's configuration"
fi

mkdir -p "$STATE"/{state,spool,log} /etc/slurm
render_conf > "$CONF.tmp"
if ! cmp -s "$CONF.tmp" "$CONF" 2>/dev/null; then
  mv "$CONF.tmp" "$CONF"
  changed=1
else
  rm -f "$CONF.tmp"
  changed=0
fi

# munge: a key (Debian's postinst usually made one), its run directory, the daemon as user munge
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  if command -v mungekey >/dev/null; then mungekey --create --force; else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n </dev/null | unmunge >/dev/null 2>&1 || fail "munged does not answer (see /var/log/munge/munged.log)"

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ "$changed" = 1 ]; then  # a new configuration: restart what runs under the old one
  for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
    if running "$pidfile"; then
      pid="$(cat "$pidfile")"; kill "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
fi
running "$STATE/slurmctld.pid" || /usr/sbin/slurmctld -i   # -i: ignore state files of an older cluster
running "$STATE/slurmd.pid" || /usr/sbin/slurmd

for _ in $(seq 60); do
  state="$(node_state)"
  if [ "$state" = idle ]; then
    say "node $host ($cpus CPUs, $mem_mb MB) idle in partition $PARTITION; state and logs in $STATE"
    exit 0
  fi
  [ "$state" = down ] || [ "$state" = drained ] && scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 0.5
done
fail "node $host not idle after 30 s (state: ${state:-unknown}); see $STATE/log/"
