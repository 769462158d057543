#!/bin/sh
# Slurm Prolog for nodes running ppm (docs/slurm.md). Runs as root on each
# node of a job when it is allocated (PrologFlags=Alloc). A job that needs
# its nodes to itself (--exclusive) gets them without ppm-managed work: the
# node is drained (its managed processes move to other nodes, none arrive)
# within a deadline, and ppm-epilog.sh ends the drain.
#
# Settings (/etc/default/ppm-slurm; slurmd's environment wins over it):
#   PPM=PATH                           the ppm executable (/usr/bin/ppm)
#   PPM_DRAIN=exclusive|always|never   which jobs drain the node (exclusive)
#   PPM_DRAIN_DEADLINE=S               seconds for the drain (300)
#   PPM_ON_TIMEOUT=fail|run            drain not done in time: fail the
#                                      prolog (Slurm requeues the job and
#                                      drains the node), or run the job
#                                      anyway (fail)
#
# Exit status, as Slurm reads it: 0 the job may start; anything else fails
# the prolog (Slurm sets the node DRAIN with "Prolog error" and requeues the
# job). Only a drain that could not finish in time fails; a node without
# ppm (no agent) has no managed work to move, and runs the job.
PATH=/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}
export PATH
e_ppm=${PPM-} e_mode=${PPM_DRAIN-} e_deadline=${PPM_DRAIN_DEADLINE-} e_on=${PPM_ON_TIMEOUT-}
[ -r /etc/default/ppm-slurm ] && . /etc/default/ppm-slurm
PPM=${e_ppm:-${PPM:-/usr/bin/ppm}}
mode=${e_mode:-${PPM_DRAIN:-exclusive}}
deadline=${e_deadline:-${PPM_DRAIN_DEADLINE:-300}}
on_timeout=${e_on:-${PPM_ON_TIMEOUT:-fail}}
job=${SLURM_JOB_ID:-}
mark_dir=/run/ppm/slurm

log() { logger -t ppm-prolog "job ${job}: $*" 2>/dev/null; echo "ppm-prolog: job ${job}: $*" >&2; }

case "$job" in
'' | *[!0-9]*) log "no numeric SLURM_JOB_ID; nothing to do"; exit 0 ;;
esac
case "$mode" in
never) exit 0 ;;
always) ;;
exclusive)
	# An exclusive job shows OverSubscribe=NO.
	if ! scontrol -o show job "$job" 2>/dev/null | grep -q 'OverSubscribe=NO'; then
		exit 0
	fi
	;;
*) log "unknown PPM_DRAIN=$mode; treated as exclusive" ;;
esac
if ! [ -x "$PPM" ]; then
	log "$PPM is not installed; nothing to drain"
	exit 0
fi

mkdir -p -m 0700 "$mark_dir"
# The epilog ends the drain only if this job began it (another job's, or an
# admin's, stays).
"$PPM" drain --deadline "$deadline" >"$mark_dir/prolog-$job.log" 2>&1
rc=$?
case $rc in
0)
	: >"$mark_dir/drained-$job"
	log "node drained for the job"
	exit 0
	;;
7)
	: >"$mark_dir/drained-$job"
	log "managed processes still here after ${deadline} s: $(tail -n 3 "$mark_dir/prolog-$job.log" | tr '\n' ' ')"
	if [ "$on_timeout" = run ]; then exit 0; fi
	"$PPM" undrain >/dev/null 2>&1
	rm -f "$mark_dir/drained-$job"
	exit 1
	;;
*)
	# No agent (exit 4), or it refused: there is no ppm work to move here.
	log "ppm drain exited $rc (no agent?); the job runs: $(head -n 1 "$mark_dir/prolog-$job.log")"
	exit 0
	;;
esac
