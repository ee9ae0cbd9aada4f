#!/bin/busybox sh
# Kiln guest init, guest protocol 1 (docs/system-image.md). Runs as pid 1
# from Kiln's initramfs: loads the virtio modules, mounts the task's disk
# (a per-task overlay of the image), reads the task from fw_cfg
# (opt/org.kiln/task), runs it in a chroot of the disk with its output on the
# virtio-serial ports org.kiln.stdout / org.kiln.stderr, sends the files of
# /kiln/output as a tar stream on org.kiln.output, reports "exit <code>" (or
# "setup: <why>") on org.kiln.status, and powers the machine off.
/bin/busybox mkdir -p /bin /proc /sys /dev /root /run /tmp
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
    insmod "/lib/kiln/modules/$m.ko" 2>/dev/null
done </lib/kiln/modules/order
TASK=/sys/firmware/qemu_fw_cfg/by_name/opt/org.kiln/task/raw
n=0
until [ -e "$TASK" ] && [ -e /dev/vda ] && [ "$(ls /sys/class/virtio-ports 2>/dev/null | wc -l)" -ge 4 ]; do
    n=$((n + 1))
    [ "$n" -gt 400 ] && break
    sleep 0.05
done
for p in /sys/class/virtio-ports/*; do
    name=$(cat "$p/name" 2>/dev/null)
    [ -n "$name" ] && ln -sf "/dev/${p##*/}" "/dev/$name"
done
finish() {
    if [ -e /dev/org.kiln.status ]; then echo "$*" >/dev/org.kiln.status; else echo "kiln-init: $*" >/dev/console; fi
    sync
    poweroff -f
}
cp "$TASK" /run/task.sh 2>/dev/null || finish "setup: no task in fw_cfg opt/org.kiln/task"
[ -e /dev/org.kiln.stdout ] || finish "setup: the org.kiln.* virtio-serial ports are missing"
mount -t ext4 /dev/vda /root || finish "setup: cannot mount the root disk /dev/vda"
mkdir -p /root/proc /root/sys /root/dev /root/tmp /root/run /root/kiln/output
mount -t proc proc /root/proc
mount -t sysfs sysfs /root/sys
mount -t devtmpfs devtmpfs /root/dev
mkdir -p /root/dev/pts /root/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /root/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /root/dev/shm
mount -t tmpfs -o mode=755 tmpfs /root/run
KILN_NETWORK=0
KILN_TMP_SIZE=1073741824
. /run/task.sh
mount -t tmpfs -o "mode=1777,size=$KILN_TMP_SIZE" tmpfs /root/tmp
hostname kiln
ip link set lo up
if [ "$KILN_NETWORK" = 1 ] && [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    ip addr add 10.0.2.15/24 dev eth0
    ip route add default via 10.0.2.2
    echo "nameserver 10.0.2.3" >/root/etc/resolv.conf
fi
kiln_run </dev/null >/dev/org.kiln.stdout 2>/dev/org.kiln.stderr
code=$?
(cd /root/kiln/output && tar -cf - .) >/dev/org.kiln.output 2>/dev/null
finish "exit $code"
