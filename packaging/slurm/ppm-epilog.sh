#!/bin/sh
# Slurm Epilog for nodes running ppm (docs/slurm.md): ends the drain that
# ppm-prolog.sh began for this job. Always exits 0: a failed undrain is
# logged (ppm undrain by hand ends it), never a reason to drain the node in
# Slurm.
PATH=/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}
export PATH
e_ppm=${PPM-}
[ -r /etc/default/ppm-slurm ] && . /etc/default/ppm-slurm
PPM=${e_ppm:-${PPM:-/usr/bin/ppm}}
job=${SLURM_JOB_ID:-}
mark=/run/ppm/slurm/drained-$job
case "$job" in
'' | *[!0-9]*) exit 0 ;;
esac
[ -e "$mark" ] || exit 0
if "$PPM" undrain >/dev/null 2>&1; then
	rm -f "$mark" "/run/ppm/slurm/prolog-$job.log"
	logger -t ppm-epilog "job $job: drain ended" 2>/dev/null
else
	logger -t ppm-epilog "job $job: ppm undrain failed; run it by hand" 2>/dev/null
	echo "ppm-epilog: job $job: ppm undrain failed; run it by hand" >&2
fi
exit 0
