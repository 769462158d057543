#!/bin/busybox sh
# PID 1 of the initramfs of a ppm virtual-cluster guest.
# Loads the virtio/9p/overlay drivers, mounts the host's root (read-only 9p)
# under a tmpfs overlay, sets the node's name and address from the kernel
# command line (ppm.node=, ppm.ip=, ppm.hosts=, ppm.path=, ppm.upper=), and
# hands over to
# ppm-guest-agent inside that root.
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

node=node1 ip= hosts= upper= ppmpath=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	ppm.node=*) node=${arg#ppm.node=} ;;
	ppm.ip=*) ip=${arg#ppm.ip=} ;;
	ppm.hosts=*) hosts=${arg#ppm.hosts=} ;;
	ppm.upper=*) upper=${arg#ppm.upper=} ;;
	ppm.path=*) ppmpath=${arg#ppm.path=} ;;
	esac
done

mkdir -p /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 hostroot /host ||
	fail "cannot mount the host's root over 9p"
mount -t tmpfs -o mode=0755${upper:+,size=$upper} rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
	fail "cannot mount the overlay"

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
echo "ppm-guest-init: $node ready for the agent" > /dev/console
cd /newroot
export PATH="${ppmpath:+$ppmpath:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export HOME=/root TERM=dumb LANG=C.UTF-8 DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
exec chroot /newroot /run/ppm-guest-agent
