#!/bin/sh
# Reports a failed systemd boot on the console: details, then the line the
# host looks for ("ppm-guest-init: FAILED").
{
	echo "ppm-guest-init: $*; failed units:"
	systemctl --no-pager --plain --no-legend --failed
	echo "ppm-guest-init: warnings of this boot (last 30):"
	journalctl -b -p warning --no-pager -o short-monotonic | tail -n 30
	echo "ppm-guest-init: FAILED ($*)"
} > /dev/console 2>&1
