#!/bin/busybox sh
# /init of the flipside test initramfs.
#
# Loads the drivers, lets flipside-select pick the slot (it consumes a try of a slot on trial
# before that slot boots), mounts the slot read-only, mounts the data partition, records the
# selection in /run/flipside/boot and switch_roots into the slot's /init. Every step prints a
# marker line "FLIPSIDE: initrd EVENT key=value ..." on the console; qemu-tests/README.md lists
# them.
#
# When the firmware stage (flipside-boot) already chose the slot and consumed its try, the slot
# comes from `flipside.slot=a|b` on the command line or, when the command line says nothing
# (Secure Boot locks it), from flipside-boot's volatile FlipsideSlot EFI variable; then
# flipside-select does NOT run (it would consume a second try) and the selection line is made
# here from the GPT: root-<slot> found by its partition name in /sys/class/block/*/uevent.
#
# Kernel command line:
#   flipside.slot=a|b       flipside-boot's choice (flipside-boot appends it)
#   flipside.disk=DEV       the disk holding the GPT (default /dev/vda)
#   flipside.watchdog=SECS  load the i6300esb watchdog and start it with SECS seconds before the
#                           switch: the system must keep feeding it (or stop it) or the machine
#                           resets
#   flipside.probe          print the start marker and power off at once (accelerator probe)
#   flipside.verity=...     open the slot's root through dm-verity (flipside-verity): the whole
#                           root is read once through a check device first; a block that does
#                           not match the root hash marks the slot bad (flipside-select
#                           --mark-bad: also a proven slot) and reboots, so that the other slot
#                           boots; then the root is mounted from the verity device, which
#                           restarts (or panics) the machine on a corrupted read at run time
#   flipside.verity-bench   also time reading the root without and with dm-verity (a marker)
#
# Failures: no bootable slot, an unreadable GPT, or a try that cannot be recorded power off
# (nothing would change on a retry). A slot that cannot be mounted or has no /init reboots when
# it was a trial boot (its try is spent, so the selector moves on and falls back) and powers
# off when it was a proven slot (a reboot would loop on it).

/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin

mark() {
	echo "FLIPSIDE: initrd $*"
}

# fail STAGE CODE ACTION MESSAGE: report and power off or reboot; never returns.
fail() {
	echo "flipside-initrd: $4"
	mark "fail stage=$1 code=$2 action=$3"
	if [ "$3" = reboot ]; then
		reboot -f
	else
		poweroff -f
	fi
	while :; do sleep 60; done
}

# slot_failed STAGE MESSAGE: the chosen slot cannot be started.
slot_failed() {
	if [ "$FLIPSIDE_TRIAL" = 1 ]; then
		fail "$1" 0 reboot "$2 (trial boot of slot $FLIPSIDE_SLOT: its try is spent)"
	fi
	fail "$1" 0 poweroff "$2 (proven slot $FLIPSIDE_SLOT: not retrying)"
}

# bytes DEV OFFSET COUNT FORMAT: COUNT bytes of DEV at OFFSET through od -t FORMAT.
bytes() {
	echo $(dd if="$1" bs=1 skip="$2" count="$3" 2>/dev/null | od -An -v -t "$4")
}

# efivar_slot: the slot in flipside-boot's FlipsideSlot variable (attribute word, then "a" or
# "b" as UTF-16LE), if efivarfs is there and holds it.
efivar_slot() {
	vars=/sys/firmware/efi/efivars
	[ -d "$vars" ] || return 0
	mount -t efivarfs efivarfs "$vars" 2>/dev/null
	file=$vars/FlipsideSlot-04bfef25-d88a-4d8f-bb49-90caf86c6315
	[ -r "$file" ] || return 0
	case $(dd if="$file" bs=1 skip=4 count=1 2>/dev/null) in
	a) echo a ;;
	b) echo b ;;
	esac
}

# firmware_selection SLOT: the flipside-select line for the slot flipside-boot booted, from
# the primary GPT (512-byte sectors): root-SLOT by name, its PARTUUID, and its bits as the
# firmware left them (the try of a trial boot is already consumed, so T is the tries left).
firmware_selection() {
	part=
	partn=
	for ue in /sys/class/block/*/uevent; do
		grep -qx "PARTNAME=root-$1" "$ue" || continue
		[ -z "$part" ] || return 1 # two partitions of that name: ambiguous
		part=/dev/$(sed -n 's/^DEVNAME=//p' "$ue")
		partn=$(sed -n 's/^PARTN=//p' "$ue")
	done
	[ -n "$partn" ] || return 1
	lba=$(bytes "$disk" $((512 + 72)) 4 u4)
	size=$(bytes "$disk" $((512 + 84)) 4 u4)
	entry=$((lba * 512 + (partn - 1) * size))
	# Attribute bytes 6 and 7: tries (high nibble of 6), successful (bit 0 of 7).
	set -- $(bytes "$disk" $((entry + 54)) 2 u1)
	tries=$(($1 >> 4))
	if [ $(($2 & 1)) = 1 ]; then trial=0 tries=0; else trial=1; fi
	set -- $(bytes "$disk" $((entry + 16)) 16 x1)
	uuid=$4$3$2$1-$6$5-$8$7-$9${10}-${11}${12}${13}${14}${15}${16}
	echo "FLIPSIDE_SLOT=$slot FLIPSIDE_PARTUUID=$uuid FLIPSIDE_PARTITION=$part FLIPSIDE_PARTNUM=$partn FLIPSIDE_TRIAL=$trial FLIPSIDE_TRIES_LEFT=$tries"
}

disk=/dev/vda
watchdog=
probe=
slot=
verity=
verity_bench=no
for word in $(cat /proc/cmdline); do
	case $word in
	flipside.slot=a | flipside.slot=b) slot=${word#*=} ;;
	flipside.disk=*) disk=${word#*=} ;;
	flipside.watchdog=*) watchdog=${word#*=} ;;
	flipside.probe) probe=1 ;;
	flipside.verity=*) verity=1 ;;
	flipside.verity-bench) verity_bench=yes ;;
	esac
done

mark "start kernel=$(uname -r)"
if [ -n "$probe" ]; then
	poweroff -f
fi

while read -r module; do
	args=
	case $module in
	'') continue ;;
	watchdog) [ -n "$watchdog" ] || continue ;;
	i6300esb)
		[ -n "$watchdog" ] || continue
		args="heartbeat=$watchdog"
		;;
	efivarfs)
		# Only under UEFI firmware (flipside-boot): systemd mounts efivarfs, the updater reads
		# FlipsideSlot there.
		[ -d /sys/firmware/efi ] || continue
		;;
	reed_solomon | dm-mod | dm-bufio | dm-verity) [ -n "$verity" ] || continue ;;
	esac
	insmod "/lib/modules/$module.ko" $args || mark "warn module=$module"
done </lib/modules/load-order

waited=0
while [ ! -b "$disk" ]; do
	waited=$((waited + 1))
	[ "$waited" -le 200 ] || fail disk 0 poweroff "no block device $disk after 20 s"
	usleep 100000
done

[ -n "$slot" ] || slot=$(efivar_slot)
if [ -n "$slot" ]; then
	# flipside-boot chose the slot and recorded its try: do not select again.
	chooser=flipside-boot
	selection=$(firmware_selection "$slot") ||
		fail select 4 poweroff "flipside-boot chose slot $slot but $disk has no single partition root-$slot"
else
	chooser=flipside-select
	selection=$(flipside-select --disk "$disk")
	rc=$?
	case $rc in
	0) ;;
	3) fail select 3 poweroff "no bootable slot on $disk" ;;
	4) fail select 4 poweroff "cannot read the boot table on $disk" ;;
	5) fail select 5 poweroff "cannot record the consumed try on $disk: not booting the trial slot" ;;
	*) fail select "$rc" poweroff "flipside-select failed with exit code $rc" ;;
	esac
fi
eval "$selection"
mark "select slot=$FLIPSIDE_SLOT trial=$FLIPSIDE_TRIAL tries_left=$FLIPSIDE_TRIES_LEFT partnum=$FLIPSIDE_PARTNUM partuuid=$FLIPSIDE_PARTUUID by=$chooser"

root_dev=$FLIPSIDE_PARTITION
if [ -n "$verity" ]; then
	root_dev=$(flipside-verity open "$FLIPSIDE_PARTITION" --bench "$verity_bench")
	rc=$?
	case $rc in
	0) mark "verity slot=$FLIPSIDE_SLOT result=ok dev=$root_dev" ;;
	4)
		# The root was changed after it was written: this slot must not boot again, proven or not.
		mark "verity slot=$FLIPSIDE_SLOT result=corrupt"
		flipside-select --disk "$disk" --mark-bad "$FLIPSIDE_SLOT" ||
			fail verity 4 poweroff "slot $FLIPSIDE_SLOT is corrupted and cannot be marked bad"
		fail verity 4 reboot "slot $FLIPSIDE_SLOT does not match its root hash: marked bad"
		;;
	*) slot_failed verity "cannot open slot $FLIPSIDE_SLOT through dm-verity (flipside-verity exit $rc)" ;;
	esac
fi

mount -t squashfs -o ro "$root_dev" /newroot ||
	slot_failed mount "cannot mount slot $FLIPSIDE_SLOT ($FLIPSIDE_PARTITION) read-only as squashfs"
# /init is usually an absolute link into the store: test the link itself, not its target.
[ -L /newroot/init ] || [ -e /newroot/init ] || slot_failed init "slot $FLIPSIDE_SLOT has no /init"

if [ -d /newroot/data ]; then
	if data=$(findfs LABEL=data 2>/dev/null) && mount -t ext4 -o nosuid,nodev "$data" /newroot/data; then
		mark "data dev=$data"
	else
		mark "warn data=unmounted"
	fi
fi

mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/flipside
echo "$selection" >/run/flipside/boot

if [ -n "$watchdog" ]; then
	# Opening starts it; closing without the magic 'V' leaves it running.
	if [ -c /dev/watchdog ] && echo 1 >/dev/watchdog; then
		mark "watchdog armed seconds=$watchdog"
	else
		mark "warn watchdog=missing"
	fi
fi

for fs in dev proc sys run; do
	if [ -d "/newroot/$fs" ]; then
		mount --move "/$fs" "/newroot/$fs"
	else
		umount -l "/$fs"
	fi
done

eval "export $selection"
mark "switch slot=$FLIPSIDE_SLOT"
# switch_root must run as PID 1. If it cannot start the new init it exits, the kernel panics
# and panic=-1 on the command line reboots: a trial slot then falls back like any failed boot.
exec switch_root /newroot /init
