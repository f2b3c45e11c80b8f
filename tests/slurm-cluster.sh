#!/bin/bash
# tests/slurm-cluster.sh - a real single-node Slurm cluster from Debian's
# packages, private to one folder, for the tests and for trying medpipe's
# dataset Makefiles on Slurm without a cluster at hand:
#
#   eval "$(bash tests/slurm-cluster.sh start /tmp/mpslurm)"   # prints the exports
#   salloc -n2 make -f pipelines/ct-npz.mk -j2 RUN=srun IN=ds OUT=out
#   sbatch -n2 --wait -o out.log --wrap 'make -f pipelines/ct-npz.mk -j2 RUN=srun IN=ds OUT=out'
#   bash tests/slurm-cluster.sh stop /tmp/mpslurm               # daemons stopped, folder removed
#
#   bash tests/slurm-cluster.sh env DIR        # the exports again (SLURM_CONF)
#   bash tests/slurm-cluster.sh install        # the Debian packages, as root
#
# start: installs munge, slurmctld, slurmd and slurm-client (apt-get
# --no-install-recommends; as root, only when missing), then in DIR (default: a
# new folder under $TMPDIR) writes a private munge key, and a slurm.conf with:
# one node described by `slurmd -C`, one partition "medpipe" holding it,
# select/cons_tres (cores are the consumable: `-n2` gives 2 tasks that run at
# once), proctrack/linuxproc and task/none (no cgroups, no systemd),
# SlurmUser=root, no accounting, ReturnToService=2, InactiveLimit=60, ports
# chosen free at random, addresses on 127.0.0.1 only (where the host name
# resolves to a loopback address; elsewhere the daemons listen on every
# address, on those ports).  munged, slurmctld and slurmd are then started
# as plain daemons (no systemd) with their sockets, state, logs and pid files
# in DIR; the script waits for the node to be idle.
# Nothing outside DIR is written, so it can run next to a real Slurm or
# another copy of itself.  Commands find this cluster through SLURM_CONF.
#
# stop: cancels the cluster's jobs, stops the three daemons by their pid files
# and removes DIR.  Logs: DIR/slurmctld.log, DIR/slurmd.log, DIR/munged.log.
#
# Exit status: 0 started/stopped; 77 when the cluster cannot start here (not
# root, no apt-get for the missing packages, a daemon that will not run): the
# reason is the one line on stderr, and nothing is left running; 2 bad usage.
set -u

die() { echo "slurm-cluster: $*" >&2; exit 1; }
cannot() { echo "slurm-cluster: cannot start: $*" >&2; exit 77; }
PKGS="munge slurmctld slurmd slurm-client"

need_pkgs() {
	local p missing=""
	for p in munged slurmctld slurmd srun; do
		command -v "$p" > /dev/null 2>&1 || [ -x "/usr/sbin/$p" ] || missing="$missing $p"
	done
	echo "$missing"
}

install_pkgs() {
	[ -z "$(need_pkgs)" ] && return 0
	[ "$(id -u)" = 0 ] || cannot "Slurm is not installed and this is not root (apt-get install --no-install-recommends $PKGS)"
	command -v apt-get > /dev/null || cannot "Slurm is not installed and there is no apt-get"
	local log
	log=$(mktemp "${TMPDIR:-/tmp}/slurm-apt.XXXXXX")
	# the packages' own services (systemd units, /etc/slurm, /etc/munge) are
	# not used: this script starts daemons of its own
	if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			-o DPkg::Lock::Timeout=300 $PKGS \
		|| { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
				-o DPkg::Lock::Timeout=300 $PKGS; }; } > "$log" 2>&1; then
		local why
		why=$(tail -n 1 "$log"); rm -f "$log"
		cannot "apt-get install $PKGS failed: $why"
	fi
	rm -f "$log"
	[ -z "$(need_pkgs)" ] || cannot "after apt-get, still missing:$(need_pkgs)"
}

export PATH="$PATH:/usr/sbin:/sbin"

# a port with nothing listening on 127.0.0.1, and the next N free too
port_busy() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }
free_ports() {
	local n=$1 base i tries=0
	while [ $tries -lt 50 ]; do
		base=$((20000 + RANDOM % 40000)); i=0
		while [ $i -lt "$n" ] && ! port_busy $((base + i)); do i=$((i + 1)); done
		[ $i -eq "$n" ] && { echo "$base"; return 0; }
		tries=$((tries + 1))
	done
	return 1
}

print_env() {
	echo "export SLURM_CONF='$1/slurm.conf'"
	echo "export MEDPIPE_SLURM_DIR='$1'"
}

pid_of() { [ -s "$1" ] && cat "$1"; }
alive() { [ -n "$1" ] && kill -0 "$1" 2> /dev/null; }

stop_cluster() {
	local d=$1 f pid i
	[ -f "$d/.medpipe-slurm" ] || die "$d: not a folder made by slurm-cluster.sh start"
	export SLURM_CONF="$d/slurm.conf"
	# the cluster's jobs first, so their steps end (SIGTERM, then SIGKILL after KillWait)
	if alive "$(pid_of "$d/slurmctld.pid")"; then
		scancel --quiet --full --user=root 2> /dev/null
		for i in $(seq 1 60); do
			[ -z "$(squeue -h -o %i -t all 2> /dev/null | head -1)" ] && break
			[ -z "$(squeue -h -o %i -t running,completing 2> /dev/null)" ] && break
			sleep 0.25
		done
	fi
	for f in slurmd slurmctld munged; do
		pid=$(pid_of "$d/$f.pid")
		alive "$pid" || continue
		kill "$pid"
		for i in $(seq 1 40); do alive "$pid" || break; sleep 0.25; done
		alive "$pid" && { echo "slurm-cluster: $f ($pid) still running after SIGTERM: SIGKILL" >&2; kill -9 "$pid"; }
	done
	# job steps that outlived slurmd (its spool holds one socket per running step)
	if ls "$d/spool/"*_[0-9]* > /dev/null 2>&1; then
		echo "slurm-cluster: steps still running: $(ls "$d/spool/" | tr "\n" " ")" >&2
	fi
	[ "${KEEP:-0}" = 1 ] && { echo "slurm-cluster: kept $d (KEEP=1)" >&2; return 0; }
	rm -rf "$d"
}

start_cluster() {
	local d=$1 host conf node base i state
	install_pkgs
	[ "$(id -u)" = 0 ] || cannot "not root: slurmctld and slurmd run as root here (SlurmUser=root)"
	host=$(hostname -s) || cannot "no host name"
	if [ -z "$d" ]; then
		d=$(mktemp -d "${TMPDIR:-/tmp}/medpipe-slurm.XXXXXX") || cannot "no temporary folder"
	else
		[ -e "$d" ] && [ -n "$(ls -A "$d" 2> /dev/null)" ] && die "$d exists and is not empty"
		mkdir -p "$d" || die "$d: cannot make the folder"
		d=$(cd "$d" && pwd)
	fi
	chmod 700 "$d"
	: > "$d/.medpipe-slurm"
	mkdir -p "$d/munge" "$d/state" "$d/spool" "$d/tmp"
	chmod 700 "$d/munge"
	# a failed start cleans up what it started
	trap 'echo "slurm-cluster: cannot start: $why (logs were in '"$d"')" >&2; stop_cluster "'"$d"'" > /dev/null 2>&1; exit 77' EXIT
	why="unknown"

	# --- munge: a private key and socket
	if command -v mungekey > /dev/null; then
		mungekey --create --keyfile="$d/munge/munge.key" 2> /dev/null
	fi
	[ -s "$d/munge/munge.key" ] || dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 2> /dev/null
	chmod 600 "$d/munge/munge.key"
	# --force: $TMPDIR is world-writable (sticky), which munged otherwise refuses
	why="munged did not start: $(munged --force --key-file="$d/munge/munge.key" \
		--socket="$d/munge/munge.socket" --pid-file="$d/munged.pid" \
		--log-file="$d/munged.log" --seed-file="$d/munge/seed" 2>&1 | tail -n 1)"
	for i in $(seq 1 40); do [ -S "$d/munge/munge.socket" ] && break; sleep 0.1; done
	[ -S "$d/munge/munge.socket" ] || exit 77

	# --- slurm.conf
	node=$(slurmd -C 2> /dev/null | head -n 1)
	case "$node" in NodeName=*) ;; *) why="slurmd -C printed no node line"; exit 77;; esac
	# srun listens on several ports of SrunPortRange per job step, and a port
	# stays taken for a minute after (TIME_WAIT): 100 ports ran out once in
	# tests/t/slurm.sh's 23 steps ("sock_bind_listen_range: all ports in
	# range exhausted"); 1000 leave room
	base=$(free_ports 1002) || { why="no free ports on 127.0.0.1"; exit 77; }
	# the daemons and srun listen on the address the host name resolves to
	# (NoInAddrAny): 127.0.0.1 where it is a loopback address (Debian's
	# 127.0.1.1 convention); elsewhere (a container's own address, no name
	# at all) on every address, still on the ports above
	bind="CommunicationParameters=NoInAddrAny,NoCtldInAddrAny"
	case "$(getent hosts "$host" | awk '{ print $1; exit }')" in
	127.*) ;;
	*) bind="#CommunicationParameters=NoInAddrAny,NoCtldInAddrAny  ($host is not a loopback address)"
	   echo "slurm-cluster: note: $host does not resolve to 127.x: the daemons listen on every address (ports $base-$((base + 1001)))" >&2 ;;
	esac
	conf=$d/slurm.conf
	cat > "$conf" <<EOF
# a private single-node cluster made by medpipe's tests/slurm-cluster.sh
ClusterName=medpipe
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$base
SlurmdPort=$((base + 1))
SrunPortRange=$((base + 2))-$((base + 1001))
$bind
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
TmpFS=$d/tmp
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
InactiveLimit=60
KillWait=10
MinJobAge=5
MailProg=/bin/true
PlugStackConfig=$d/plugstack.conf
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=medpipe Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
	: > "$d/plugstack.conf"
	export SLURM_CONF=$conf

	# --- the daemons (they fork and write their pid files)
	why="slurmctld did not start: $(slurmctld -f "$conf" -i 2>&1 | tail -n 1) (see slurmctld.log: $(tail -n 1 "$d/slurmctld.log" 2> /dev/null))"
	for i in $(seq 1 100); do scontrol ping 2> /dev/null | grep -q UP && break; sleep 0.1; done
	scontrol ping 2> /dev/null | grep -q UP || { why="slurmctld did not answer: $(tail -n 1 "$d/slurmctld.log" 2> /dev/null)"; exit 77; }
	why="slurmd did not start: $(slurmd -f "$conf" 2>&1 | tail -n 1)"
	for i in $(seq 1 200); do
		state=$(sinfo -h -o %T 2> /dev/null | head -n 1)
		[ "$state" = idle ] && break
		sleep 0.1
	done
	[ "$state" = idle ] || { why="the node is '$state', not idle: $(tail -n 1 "$d/slurmd.log" 2> /dev/null)"; exit 77; }
	# ready means a job step runs: a node can show idle a moment before its
	# first step launches (seen once: the first srun of the first job failed)
	for i in $(seq 1 20); do
		srun -N1 -n1 --quiet true > "$d/first-step.log" 2>&1 && break
		sleep 0.5
	done
	srun -N1 -n1 --quiet true > "$d/first-step.log" 2>&1 \
		|| { why="no job step runs: $(tail -n 1 "$d/first-step.log")"; exit 77; }
	trap - EXIT
	print_env "$d"
}

case "${1:-}" in
start) start_cluster "${2:-}" ;;
stop) [ -n "${2:-}" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop_cluster "$2" ;;
env) [ -f "${2:-}/slurm.conf" ] || { echo "usage: $0 env DIR (a started cluster)" >&2; exit 2; }; print_env "$(cd "$2" && pwd)" ;;
install) install_pkgs ;;
*) echo "usage: $0 start [DIR] | stop DIR | env DIR | install" >&2; exit 2 ;;
esac
