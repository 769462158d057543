#!/bin/busybox sh
# PID 1 of the initramfs of a ppm virtual-cluster guest.
# Loads the virtio/9p/overlay drivers, mounts the host's root (read-only 9p)
# under a tmpfs overlay, sets the node's name and address from the kernel
# command line (ppm.node=, ppm.ip=, ppm.hosts=, ppm.path=, ppm.upper=), and
# hands over to
# ppm-guest-agent inside that root. With ppm.init=systemd it boots the
# root's systemd instead, which starts the agent as a service (see
# start_systemd below and the units in /systemd).
/bin/busybox --install -s /bin
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

fail() {
	echo "ppm-guest-init: $*" > /dev/console
	echo "ppm-guest-init: FAILED" > /dev/console
	poweroff -f
}

while read -r m; do
	insmod "/modules/$m" || fail "insmod $m"
done < /modules/order

node=node1 ip= hosts= upper= ppmpath= initkind=busybox
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	ppm.node=*) node=${arg#ppm.node=} ;;
	ppm.ip=*) ip=${arg#ppm.ip=} ;;
	ppm.hosts=*) hosts=${arg#ppm.hosts=} ;;
	ppm.upper=*) upper=${arg#ppm.upper=} ;;
	ppm.path=*) ppmpath=${arg#ppm.path=} ;;
	ppm.init=*) initkind=${arg#ppm.init=} ;;
	esac
done

mkdir -p /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 hostroot /host ||
	fail "cannot mount the host's root over 9p"
mount -t tmpfs -o mode=0755${upper:+,size=$upper} rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
	fail "cannot mount the overlay"

# Prepares the overlay's /etc for systemd (only what a test node needs: the
# agent's unit and a target that pulls it and basic.target, masks for what
# would fail or slow a TCG boot, a fresh machine id) and hands over to it.
start_systemd() {
	s=/systemd e=$r/etc/systemd
	[ -x $r/lib/systemd/systemd ] || fail "no /lib/systemd/systemd on the host"
	mkdir -p $e/system $e/system-generators $e/system.conf.d $e/journald.conf.d ||
		fail "cannot write /etc/systemd"
	for f in ppm-guest.target ppm-guest-agent.service ppm-guest-failed.service \
		emergency.service rescue.service; do
		cp $s/$f $e/system/$f || fail "cannot install $f"
	done
	ln -sfn ppm-guest.target $e/system/default.target
	grep -v '^#' $s/masked | while read -r u; do
		[ -n "$u" ] && ln -sfn /dev/null "$e/system/$u"
	done
	grep -v '^#' $s/generators-off | while read -r g; do
		[ -n "$g" ] && ln -sfn /dev/null "$e/system-generators/$g"
	done
	cp $s/system.conf $e/system.conf.d/ppm-guest.conf
	cp $s/journald.conf $e/journald.conf.d/ppm-guest.conf
	cp $s/failed.sh $r/run/ppm-guest-failed && chmod 755 $r/run/ppm-guest-failed
	{
		echo "PATH=${ppmpath:+$ppmpath:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
		echo "HOME=/root"
		echo "TERM=dumb"
		echo "LANG=C.UTF-8"
		echo "DENO_NO_UPDATE_CHECK=1"
		echo "NO_COLOR=1"
	} > $r/run/ppm-guest-agent.env
	tr -d '-' < /proc/sys/kernel/random/uuid > $r/etc/machine-id ||
		fail "cannot write /etc/machine-id"
	# A host that is itself a container: its marker would make systemd take
	# the guest for one (and, e.g., ignore the kernel command line).
	rm -f $r/.dockerenv $r/run/.containerenv
	echo "ppm-guest-init: $node starting systemd" > /dev/console
	umount -l /proc /sys /dev
	exec switch_root /newroot /lib/systemd/systemd
}

r=/newroot
mount -t proc proc $r/proc
mount -t sysfs sys $r/sys
mount -t devtmpfs dev $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $r/dev/pts
mount -t tmpfs -o mode=1777 tmp $r/dev/shm
mount -t tmpfs -o mode=1777 tmp $r/tmp
mount -t tmpfs -o mode=0755 run $r/run
# The guest's /tmp is its own: the host's /tmp stays reachable at /run/host/tmp
# (writable through an overlay), for checkouts that live under /tmp.
mkdir -p /rw/tmpupper /rw/tmpwork $r/run/host/tmp
mount -t overlay -o lowerdir=/host/tmp,upperdir=/rw/tmpupper,workdir=/rw/tmpwork overlay $r/run/host/tmp
[ -d $r/sys/kernel/debug ] && mount -t debugfs debugfs $r/sys/kernel/debug 2>/dev/null

hostname "$node"
echo "$node" > $r/etc/hostname
{
	echo "127.0.0.1 localhost"
	echo "$hosts" | tr ',' '\n' | tr '=' ' ' | awk 'NF == 2 { print $2, $1 }'
} > $r/etc/hosts

ip link set lo up
if [ -n "$ip" ]; then
	ip link set eth0 up || fail "no eth0"
	ip addr add "$ip" dev eth0 || fail "cannot set $ip"
fi

cp /ppm-guest-agent $r/run/ppm-guest-agent
[ "$initkind" = systemd ] && start_systemd
echo "ppm-guest-init: $node ready for the agent" > /dev/console
cd /newroot
export PATH="${ppmpath:+$ppmpath:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export HOME=/root TERM=dumb LANG=C.UTF-8 DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
exec chroot /newroot /run/ppm-guest-agent
