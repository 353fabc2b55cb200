#!/bin/sh
# Test stand-in for tonistiigi/binfmt, run by busybox sh inside
# 127.0.0.1:5000/test/binfmt-standin:1 (built by scripts/stack.sh).
#
#   docker run --rm --privileged IMAGE                          # status only
#   docker run --rm --privileged IMAGE --install arm64,arm      # or "all"
#   docker run --rm --privileged IMAGE --uninstall qemu-aarch64 # or "qemu-*"
#
# It behaves like the real installer where the action can see it:
#  * flags are Go-style: -install X, --install X, --install=X (same for
#    -uninstall, -mount; -version);
#  * one line per requested item on stderr ("installing: arm64 OK",
#    "installing: arm64 qemu-aarch64 already registered", ...);
#  * handlers are registered as ":qemu-NAME:M:0:MAGIC:MASK:/usr/bin/qemu-NAME:FLAGS"
#    with FLAGS=OCF (F: the kernel opens the emulator at registration time, so
#    it keeps working from every mount namespace after this container is gone);
#    QEMU_PRESERVE_ARGV0=1 adds P;
#  * afterwards the status JSON goes to stdout, indented like Go's
#    json.MarshalIndent: "supported" = native platforms plus those with an
#    enabled handler, "emulators" = enabled entries of binfmt_misc (null when
#    there is none, as the Go tool prints for an empty list);
#  * problems are reported on stderr, and the exit status is 0 all the same,
#    as the real tool does. Only an unknown flag exits 2.
# Differences: the emulators are Debian 12's qemu 7.2 builds, "supported" is
# derived from the enabled handlers instead of running a probe binary per
# architecture, and architectures this image has no emulator for are refused.

set -u
set -f # the magic strings and user input must never be glob-expanded

mnt=/proc/sys/fs/binfmt_misc
table=/usr/share/binfmt-standin/emulators.table
qemu_dir=${QEMU_BINARY_PATH:-/usr/bin}

say() { printf '%s\n' "$*" >&2; }

usage_error() {
	say "flag provided but not defined: $1"
	say "Usage of binfmt:"
	say "  -install string    architectures to install"
	say "  -mount string      binfmt_misc mount point (default \"/proc/sys/fs/binfmt_misc\")"
	say "  -uninstall string  architectures to uninstall"
	say "  -version           display version"
	exit 2
}

to_install=
to_uninstall=
show_version=
while [ $# -gt 0 ]; do
	case $1 in
	-install | --install | -uninstall | --uninstall | -mount | --mount)
		[ $# -ge 2 ] || { say "flag needs an argument: -${1#"${1%%[!-]*}"}"; exit 2; }
		opt=${1#-}; opt=${opt#-}; val=$2; shift 2 ;;
	-install=* | --install=* | -uninstall=* | --uninstall=* | -mount=* | --mount=*)
		opt=${1%%=*}; opt=${opt#-}; opt=${opt#-}; val=${1#*=}; shift ;;
	-version | --version | -version=true | --version=true)
		show_version=1; shift; continue ;;
	*) usage_error "-${1#"${1%%[!-]*}"}" ;; # Go prints the flag with one dash
	esac
	case $opt in
	install) to_install=$val ;;
	uninstall) to_uninstall=$val ;;
	mount) mnt=$val ;;
	esac
done

if [ -n "$show_version" ]; then
	q=$("$qemu_dir/qemu-aarch64" --version 2>/dev/null | sed -n '1s/^.* version \([^ ]*\).*/\1/p')
	say "binfmt-standin/1 qemu/v${q:-unknown} (Debian 12 qemu-user-static)"
	exit 0
fi

# "arm64", "linux/arm64", "linux/arm/v7", "aarch64" ... -> qemu emulator name.
emulator_for() {
	a=$1
	case $a in */*) a=${a#*/}; a=${a%%/*} ;; esac
	case $a in
	qemu-*) echo "$a" ;;
	amd64 | x86_64) echo qemu-x86_64 ;;
	arm64 | aarch64) echo qemu-aarch64 ;;
	arm | armhf | armel | armv7 | armv6) echo qemu-arm ;;
	riscv64) echo qemu-riscv64 ;;
	ppc64le) echo qemu-ppc64le ;;
	s390x) echo qemu-s390x ;;
	386 | i386) echo qemu-i386 ;;
	mips64le | mips64el) echo qemu-mips64el ;;
	mips64) echo qemu-mips64 ;;
	loong64 | loongarch64) echo qemu-loongarch64 ;;
	*) return 1 ;;
	esac
}

# The name the real tool prints for an item: the architecture of a platform.
arch_label() {
	case $1 in */*) a=${1#*/}; echo "${a%%/*}" ;; *) echo "$1" ;; esac
}

install_one() {
	label=$(arch_label "$1")
	if ! emu=$(emulator_for "$1") || ! line=$(grep "^$emu " "$table"); then
		say "installing: $label unsupported architecture: $label"
		return 0
	fi
	# shellcheck disable=SC2086 # split "name arch magic mask"
	set -- $line
	magic=$3 mask=$4
	if [ ! -e "$mnt/register" ]; then
		say "installing: $label ENOENT opening $mnt/register is it mounted?"
		return 0
	fi
	if [ -e "$mnt/$emu" ]; then
		say "installing: $label $emu already registered"
		return 0
	fi
	flags=OCF
	[ -n "${QEMU_PRESERVE_ARGV0:-}" ] && flags=${flags}P
	# One write(2) of the whole line: binfmt_misc parses each write separately.
	if printf '%s' ":$emu:M:0:$magic:$mask:$qemu_dir/$emu:$flags" >"$mnt/register" 2>/dev/null; then
		say "installing: $label OK"
	else
		say "installing: $label cannot register \"$qemu_dir/$emu\" to $mnt/register"
	fi
}

uninstall_one() {
	asked=$1 want=$1
	# A platform or architecture name stands for its emulator ("arm64" -> "aarch64").
	if emu=$(emulator_for "$want"); then want=${emu#qemu-}; fi
	found=
	set +f
	set -- "$mnt"/*
	set -f
	for entry in "$@"; do
		name=${entry##*/}
		case $name in register | status | WSLInterop | '*') continue ;; esac
		# shellcheck disable=SC2254 # $want may be a pattern such as qemu-*
		case $name in
		$want | *-$want) ;;
		*) continue ;;
		esac
		found=1
		if printf '%s' -1 >"$entry" 2>/dev/null; then
			say "uninstalling: $name OK"
		else
			say "uninstalling: $name cannot remove it"
		fi
	done
	[ -n "$found" ] || say "uninstalling: $asked not found"
}

enabled_entries() {
	set +f
	set -- "$mnt"/*
	set -f
	for entry in "$@"; do
		name=${entry##*/}
		case $name in register | status | '*') continue ;; esac
		read -r state <"$entry" 2>/dev/null || continue
		[ "$state" = enabled ] && echo "$name"
	done
}

# Prints a JSON array (Go MarshalIndent style, nested one level) or null.
json_list() {
	if [ $# -eq 0 ]; then printf 'null'; return; fi
	printf '[\n'
	i=0
	for v in "$@"; do
		i=$((i + 1))
		if [ $i -lt $# ]; then printf '    "%s",\n' "$v"; else printf '    "%s"\n' "$v"; fi
	done
	printf '  ]'
}

print_status() {
	emulators=$(enabled_entries | tr '\n' ' ')
	case $(uname -m) in
	x86_64) supported="linux/amd64 linux/386" ;;
	aarch64) supported="linux/arm64" ;;
	armv7l | armv8l) supported="linux/arm/v7 linux/arm/v6" ;;
	*) supported="linux/$(uname -m)" ;;
	esac
	# Same order as BuildKit's list of platforms it can emulate.
	for p in linux/amd64 linux/arm64 linux/riscv64 linux/ppc64le linux/s390x \
		linux/386 linux/mips64le linux/mips64 linux/loong64 linux/arm/v7 linux/arm/v6; do
		case " $supported " in *" $p "*) continue ;; esac
		emu=$(emulator_for "$p") || continue
		case " $emulators " in *" $emu "*) supported="$supported $p" ;; esac
	done
	# shellcheck disable=SC2086 # word lists
	{
		printf '{\n  "supported": '
		json_list $supported
		printf ',\n  "emulators": '
		json_list $emulators
		printf '\n}\n'
	}
}

mounted_here=
if [ ! -e "$mnt/status" ]; then
	if mount -t binfmt_misc binfmt_misc "$mnt" 2>/dev/null; then
		mounted_here=1
	else
		say "error: cannot mount binfmt_misc filesystem at $mnt: operation not permitted (run with --privileged)"
		exit 0
	fi
fi

IFS_SAVED=$IFS
IFS=,
# shellcheck disable=SC2086 # comma lists
set -- $to_uninstall
IFS=$IFS_SAVED
for item in "$@"; do [ -n "$item" ] && uninstall_one "$item"; done

if [ "$to_install" = all ]; then
	# shellcheck disable=SC2046 # one architecture name per table line
	set -- $(cut -d' ' -f2 "$table")
else
	IFS=,
	# shellcheck disable=SC2086
	set -- $to_install
	IFS=$IFS_SAVED
fi
for item in "$@"; do [ -n "$item" ] && install_one "$item"; done

print_status
[ -n "$mounted_here" ] && umount "$mnt" 2>/dev/null
exit 0
