#!/usr/bin/env bash
# scripts/stack.sh: provisions the real, local Docker stack that the
# multiarch-action tests and README examples run against.
#
#   scripts/stack.sh install       apt packages, Debian 13 engine debs, buildx plugin,
#                                  buildkitd + buildctl (scripts/buildkitd-build.sh)
#   scripts/stack.sh up            install if needed, engine, five registries, two
#                                  buildkitd daemons, base images
#   scripts/stack.sh base-debian   also build 127.0.0.1:5000/base/debian:bookworm (slow)
#   scripts/stack.sh env           "export ..." lines for eval (DOCKER_HOST, registries,
#                                  MA_BUILDKIT_AMD64, MA_BUILDKIT_ARM64, MA_BUILDKIT_TLS)
#   scripts/stack.sh status        what runs; exit 1 if something `up` started is down
#   scripts/stack.sh down          stop everything `up` started (caches are kept)
#   scripts/stack.sh registry NAME PORT [USER PASSWORD_ENV_VAR]   one more registry
#   scripts/stack.sh stop-registry NAME
#   scripts/stack.sh binfmt-clear  unregister the host's qemu-* binfmt handlers
#   scripts/stack.sh purge         down, then delete the state dir (engine data, registries)
#
# Environment:
#   MA_CACHE=/var/cache/multiarch-action  downloads, private apt state, engine prefix,
#                                         rootfs tarballs, the buildkitd build
#                                         (buildkit/bin); kept by `down`
#   MA_STATE=/var/tmp/multiarch-stack     sockets, pid files, logs, configs, engine
#                                         data, registry storage, buildkitd state
#   MA_LOCAL_ENGINE=1                     run the private engine even when the machine
#                                         already has a working docker engine + buildx
#   MA_MIRROR=http://deb.debian.org/debian  Debian mirror for the private apt state
#                                         and mmdebstrap
#   MA_PORT_BASE=5000                     first registry port (base); the others follow,
#                                         and the arm64 buildkitd takes MA_PORT_BASE+10.
#                                         Only for a second stack beside the usual one
#                                         (with its own MA_STATE): the tests use 5000-5004
#                                         and 5010.
#
# Registries (Debian's CNCF Distribution, 127.0.0.1 only, deletes enabled):
#   base 5000 (no auth; keeps its storage)   hub 5001 main-ci / 'Main#Pa55 w0rd$'
#   m1 5002 m1-ci / M1'Pa55"w0rd             m2 5003 m2-ci / M2\Pa55;w0rd|
#   m3 5004 (no auth)                        hub, m1, m2, m3 start empty on every `up`
# BuildKit daemons (v0.25.2 built from Debian's source, for buildx's `remote`
#   driver), both with the OCI worker on Debian 12's runc, host networking (no
#   CNI), no containerd worker, and one config, $MA_STATE/buildkit/buildkitd.toml,
#   that makes 127.0.0.1:5000-5009 plain-http registries:
#   amd64  unix://$MA_STATE/run/buildkitd-amd64.sock   platform linux/amd64
#   arm64  tcp://127.0.0.1:5010, mutual TLS            platform linux/arm64 (runs
#          arm64 code through the host's qemu binfmt handlers, once registered)
#   Each keeps its state in $MA_STATE/buildkit/NAME (build cache survives `up`,
#   `down` and restarts; `purge` deletes it) and logs to $MA_STATE/log/buildkitd-NAME.log.
#   The TLS files are made once with openssl in $MA_STATE/buildkit/tls: ca.pem,
#   server.pem, server-key.pem, and the client's cert.pem, key.pem (buildx:
#   --driver-opt cacert=DIR/ca.pem,cert=DIR/cert.pem,key=DIR/key.pem; buildctl:
#   --tlsdir DIR). `up` keeps daemons that run with the same settings and answer.
# Base images: 127.0.0.1:5000/base/busybox:1 (amd64, arm64, arm/v7; `up`),
#   127.0.0.1:5000/base/debian:bookworm (same platforms; `base-debian`),
#   127.0.0.1:5000/test/binfmt-standin:1 (stand-in for tonistiigi/binfmt; `up`).
# qemu binfmt handlers: `up` mounts binfmt_misc but registers none, since the
#   action under test installs them (through the stand-in). `base-debian`
#   registers Debian's qemu-aarch64/qemu-arm for mmdebstrap when missing and
#   removes the ones it added when done.
#
# Needs root (apt, mounts, dockerd); `env` and `status` do not.
# Debian 12 is the target. The system's apt sources are never modified: the
# Debian 13 packages come through a private apt state under $MA_CACHE/apt.

set -euo pipefail

# ---------------------------------------------------------------- settings --

MA_CACHE=${MA_CACHE:-/var/cache/multiarch-action}
MA_STATE=${MA_STATE:-/var/tmp/multiarch-stack}
MA_MIRROR=${MA_MIRROR:-http://deb.debian.org/debian}
MA_LOCAL_ENGINE=${MA_LOCAL_ENGINE:-}
# Unless given, the port base is the one the stack in $MA_STATE was started with.
if [[ -z ${MA_PORT_BASE:-} && -s $MA_STATE/port-base ]]; then
	MA_PORT_BASE=$(<"$MA_STATE/port-base")
fi
MA_PORT_BASE=${MA_PORT_BASE:-5000}
[[ $MA_PORT_BASE =~ ^[0-9]+$ ]] || { echo "stack: error: MA_PORT_BASE must be a number" >&2; exit 1; }

# `purge` deletes $MA_STATE and `down` unmounts whatever is below it, so both
# directories must be dedicated ones: absolute, two levels deep at least.
for dir in "$MA_CACHE" "$MA_STATE"; do
	if [[ $dir != /* || $dir == *..* || $dir =~ ^/+[^/]*/*$ ||
		$dir =~ ^/+(var|usr|home|run|etc|opt|srv|mnt|media)/+(tmp|cache|lib|local|run|log|share)?/*$ ]]; then
		echo "stack: error: '$dir' cannot be MA_CACHE or MA_STATE (use a dedicated directory)" >&2
		exit 1
	fi
done
MA_CACHE=${MA_CACHE%/} MA_STATE=${MA_STATE%/}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STANDIN_SRC=$SCRIPT_DIR/stack/binfmt-standin

# Cache layout.
APT_DIR=$MA_CACHE/apt               # private apt state (trixie lists, own status file)
DEB_DIR=$MA_CACHE/debs              # downloaded .deb files
PREFIX=$MA_CACHE/prefix             # dpkg-deb -x of docker.io, containerd, docker-buildx
BASE_DIR=$MA_CACHE/base             # rootfs tarballs for the base images
BUILDX_BIN=$PREFIX/usr/libexec/docker/cli-plugins/docker-buildx
BUILDKIT_DIR=$MA_CACHE/buildkit     # scripts/buildkitd-build.sh's BK_ROOT
BUILDKITD=$BUILDKIT_DIR/bin/buildkitd
BUILDCTL=$BUILDKIT_DIR/bin/buildctl

# State layout.
RUN_DIR=$MA_STATE/run               # sockets and pid files
LOG_DIR=$MA_STATE/log
REG_DIR=$MA_STATE/registry          # registry-NAME config, htpasswd, storage
ENGINE_DIR=$MA_STATE/engine         # containerd root and docker data-root
DOCKER_CFG=$MA_STATE/docker-config  # DOCKER_CONFIG for this script's own docker calls
CONTAINERD_SOCK=$RUN_DIR/containerd.sock
DOCKER_SOCK=$RUN_DIR/docker.sock
MODE_FILE=$MA_STATE/engine-mode     # "local" or "external <DOCKER_HOST or empty>"
BK_STATE=$MA_STATE/buildkit         # buildkitd.toml, tls/, one root dir per daemon
BK_CONFIG=$BK_STATE/buildkitd.toml
BK_TLS=$BK_STATE/tls

# Packages from Debian 12 itself. runc is Debian 12's: the Debian 13 runc
# needs glibc 2.38, while dockerd, containerd and its shim run on glibc 2.36.
# arch-test lets mmdebstrap check that a foreign architecture can execute.
# openssl makes the arm64 buildkitd's TLS certificates.
APT_PACKAGES=(qemu-user-static binfmt-support docker-registry apache2-utils mmdebstrap
	arch-test runc curl jq ca-certificates iptables xz-utils openssl)

# Debian 13 (trixie) packages extracted into $PREFIX, and the versions the
# project was written against (a different upstream series only warns).
# tini is dockerd's docker-init (`docker run --init`). docker-cli only comes
# along on a machine without a docker CLI.
ENGINE_DEBS=(docker.io containerd docker-buildx tini)
declare -A ENGINE_SERIES=([docker.io]=26. [containerd]=1.7. [docker-buildx]=0.13. [docker-cli]=26.)
DOCKER_CLI_LINK=${MA_DOCKER_CLI_LINK:-/usr/local/bin/docker} # overridable for testing
if ! command -v docker >/dev/null || [[ $(readlink "$DOCKER_CLI_LINK" 2>/dev/null) == "$MA_CACHE/prefix/usr/bin/docker" ]]; then
	ENGINE_DEBS+=(docker-cli)
fi
BUSYBOX_ARCHES=(amd64 arm64 armhf)

# The fixed registries: name port user password. Base holds base images and
# keeps its storage; the others start empty on every `up`.
REGISTRIES=(base hub m1 m2 m3)
declare -A REG_PORT=([base]=$((MA_PORT_BASE)) [hub]=$((MA_PORT_BASE + 1)) [m1]=$((MA_PORT_BASE + 2))
	[m2]=$((MA_PORT_BASE + 3)) [m3]=$((MA_PORT_BASE + 4)))
declare -A REG_USER=([base]='' [hub]=main-ci [m1]=m1-ci [m2]=m2-ci [m3]='')
declare -A REG_PASS=(
	[base]=''
	[hub]='Main#Pa55 w0rd$'
	[m1]=$'M1\'Pa55"w0rd'
	[m2]='M2\Pa55;w0rd|'
	[m3]=''
)
BASE_REGISTRY=127.0.0.1:${REG_PORT[base]}
BUSYBOX_IMAGE=$BASE_REGISTRY/base/busybox:1
DEBIAN_IMAGE=$BASE_REGISTRY/base/debian:bookworm
STANDIN_IMAGE=$BASE_REGISTRY/test/binfmt-standin:1

# The BuildKit daemons: name, listening address, the one platform its worker
# offers. The tcp one requires a client certificate.
BUILDKITDS=(amd64 arm64)
declare -A BK_ADDR=([amd64]=unix://$RUN_DIR/buildkitd-amd64.sock
	[arm64]=tcp://127.0.0.1:$((MA_PORT_BASE + 10)))
declare -A BK_PLATFORM=([amd64]=linux/amd64 [arm64]=linux/arm64)

# ----------------------------------------------------------------- helpers --

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

need_root() { [[ $EUID -eq 0 ]] || die "'$1' needs root (apt-get, mount, dockerd)"; }

# One `up`/`down`/`install` at a time: tests may call the script in parallel.
take_lock() {
	mkdir -p "$MA_STATE"
	exec 9>"$MA_STATE/lock"
	flock 9
}

# A value as a POSIX shell word for `eval`: as is when it is plain, else in
# single quotes (a ' inside becomes '\'').
shquote() {
	if [[ $1 =~ ^[A-Za-z0-9_./:@%+=,-]+$ ]]; then
		printf '%s' "$1"
	else
		printf "'%s'" "${1//\'/\'\\\'\'}"
	fi
}

# Read from /proc, so that it also works for a user other than the daemon's.
# A killed daemon stays a zombie until init reaps it (which can take a
# second), so a zombie counts as gone.
pid_alive() {
	[[ ${1:-} =~ ^[0-9]+$ ]] || return 1
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != [ZX] ]]
}

read_pid() { if [[ -s $1 ]]; then cat "$1"; fi; }

# True if the pid in a pid file is alive and still runs that program (pids
# get reused). A binary replaced on disk shows as "PATH (deleted)"; /proc/PID/exe
# of another user's process is unreadable, which counts as a match.
pidfile_runs() { # pidfile exe
	local pid running
	pid=$(read_pid "$1")
	pid_alive "$pid" || return 1
	running=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 0
	[[ ${running% (deleted)} == "$(readlink -f "$2")" ]]
}

# Starts a daemon in its own session so that it outlives this script and no
# terminal hang-up reaches it; its output goes to a log file and it inherits
# none of our file descriptors (a held lock fd or a caller's pipe would
# otherwise stay open as long as the daemon lives). Prints its pid.
spawn() {
	local logfile=$1
	shift
	(
		for fd in "/proc/$BASHPID/fd"/*; do
			fd=${fd##*/}
			[[ $fd -gt 2 ]] && eval "exec $fd>&-"
		done
		exec setsid "$@" </dev/null >>"$logfile" 2>&1
	) &
	echo $!
}

# Stops the process in a pid file, but only if it still is the program we
# started (pids get reused). Signal $4 (TERM) first; KILL after $3 seconds.
stop_pidfile() {
	local pidfile=$1 exe=$2 wait_s=${3:-15} sig=${4:-TERM} pid
	pid=$(read_pid "$pidfile")
	if pidfile_runs "$pidfile" "$exe"; then
		kill "-$sig" "$pid" 2>/dev/null || true
		local i
		for ((i = 0; i < wait_s * 10; i++)); do
			pid_alive "$pid" || break
			sleep 0.1
		done
		if pid_alive "$pid"; then
			log "$(basename "$exe") ($pid) ignored $sig, killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$pidfile"
}

# True while something accepts TCP connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ------------------------------------------------------------- engine mode --

# The docker command line for the machine's own engine (a GitHub runner, a
# laptop): as the caller has it, except that a DOCKER_HOST pointing at this
# stack's private socket (left over from `eval "$(stack.sh env)"`) is dropped.
SYSTEM_DOCKER=(docker)
if [[ ${DOCKER_HOST:-} == "unix://$DOCKER_SOCK" ]]; then
	SYSTEM_DOCKER=(env -u DOCKER_HOST docker)
fi

external_engine_usable() {
	[[ $MA_LOCAL_ENGINE == 1 ]] && return 1
	command -v docker >/dev/null || return 1
	timeout 20 "${SYSTEM_DOCKER[@]}" info >/dev/null 2>&1 || return 1
	timeout 20 "${SYSTEM_DOCKER[@]}" buildx version >/dev/null 2>&1 || return 1
}

# ENGINE_MODE is "local" (private containerd + dockerd) or "external" (the
# machine's engine). DK is the docker command line this script uses: for the
# private engine with a private DOCKER_CONFIG, so the user's credential
# helpers, contexts and plugins do not take part.
ENGINE_MODE=
DK=()
set_engine_mode() {
	ENGINE_MODE=$1
	if [[ $ENGINE_MODE == local ]]; then
		DK=(env "DOCKER_HOST=unix://$DOCKER_SOCK" "DOCKER_CONFIG=$DOCKER_CFG" docker)
	else
		DK=("${SYSTEM_DOCKER[@]}")
	fi
}

# Decides once per command whether the private engine is needed.
decide_engine_mode() {
	[[ -n $ENGINE_MODE ]] && return
	if external_engine_usable; then
		log "using the machine's own docker engine and buildx (MA_LOCAL_ENGINE=1 to use a private one)"
		set_engine_mode external
	else
		set_engine_mode local
	fi
}

dk() { "${DK[@]}" "$@"; }

# ----------------------------------------------------------------- install --

missing_apt_packages() {
	local p
	for p in "${APT_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
	done
}

install_apt_packages() {
	local missing
	mapfile -t missing < <(missing_apt_packages)
	((${#missing[@]} == 0)) && return
	log "apt-get install ${missing[*]}"
	# binfmt-support and docker-registry ship services; on a machine with an
	# init system the package scripts would start them, which the stack does
	# not want (it registers handlers and runs registries itself), so they are
	# held back with policy-rc.d for the length of the install.
	local policy=/usr/sbin/policy-rc.d had_policy=
	[[ -e $policy ]] && had_policy=1
	if [[ -z $had_policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod +x "$policy"
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	local rc=0
	# An unrelated unreachable source makes `update` complain; the install
	# may still succeed, so only the install decides.
	apt-get update -qq || log "warning: apt-get update reported errors"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null || rc=$?
	if [[ -z $had_policy ]]; then
		rm -f "$policy"
		trap - EXIT
	fi
	((rc == 0)) || die "apt-get install failed ($rc)"
}

# On a machine run by systemd the docker-registry package enables its own
# service on :5000, which would start again at every boot: the stack's base
# registry needs that port, so the service is stopped and disabled.
quiet_system_registry() {
	[[ -d /run/systemd/system ]] && command -v systemctl >/dev/null || return 0
	if systemctl is-enabled --quiet docker-registry 2>/dev/null ||
		systemctl is-active --quiet docker-registry 2>/dev/null; then
		log "stopping and disabling the docker-registry system service (it takes port 5000)"
		systemctl disable --now docker-registry >/dev/null 2>&1 || true
	fi
}

# Debian 13's InRelease is signed with the trixie keys, which Debian 12's
# debian-archive-keyring has carried since 2023.3+deb12u1. A missing or older
# keyring is installed or upgraded through the system's own sources (no other
# source is added).
ensure_trixie_keyring() {
	[[ -e /usr/share/keyrings/debian-archive-trixie-automatic.gpg ]] && return
	log "debian-archive-keyring lacks the Debian 13 keys; installing the current one"
	apt-get update -qq || log "warning: apt-get update reported errors"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-archive-keyring >/dev/null
	[[ -e /usr/share/keyrings/debian-archive-trixie-automatic.gpg ]] ||
		die "this debian-archive-keyring has no Debian 13 key; install a newer one (bookworm-backports)"
}

# apt-get/apt-cache with a state of their own: own sources.list, lists,
# cache, status file and preferences. Nothing of the system's apt setup
# except apt.conf (proxies and the like) takes part.
papt() {
	local tool=$1
	shift
	local native
	native=$(dpkg --print-architecture)
	local opts=(
		-o "Dir::State=$APT_DIR/state"
		-o "Dir::State::status=$APT_DIR/state/status"
		-o "Dir::Cache=$APT_DIR/cache"
		-o "Dir::Etc::SourceList=$APT_DIR/sources.list"
		-o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
		-o "Dir::Etc::Preferences=$APT_DIR/preferences"
		-o "Dir::Etc::PreferencesParts=$APT_DIR/preferences.d"
		-o "APT::Architecture=$native"
		-o "APT::Architectures::=$native"
	)
	local a
	for a in "${BUSYBOX_ARCHES[@]}"; do
		[[ $a == "$native" ]] || opts+=(-o "APT::Architectures::=$a")
	done
	"$tool" "${opts[@]}" "$@"
}

private_apt_update() {
	mkdir -p "$APT_DIR"/{state/lists/partial,cache/archives/partial,sources.list.d,preferences.d}
	touch "$APT_DIR/state/status"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MA_MIRROR trixie main" \
		>"$APT_DIR/sources.list"
	log "apt-get update (private state $APT_DIR, Debian 13 trixie)"
	papt apt-get update -qq
}

# Downloads PACKAGE[:ARCH] into $DEB_DIR unless a .deb for it is there.
deb_path() { # package arch -> path of the cached .deb (or nothing)
	compgen -G "$DEB_DIR/${1}_*_${2}.deb" | sort -V | tail -n1 || true
}

fetch_debs() {
	local native wanted=() spec pkg arch
	native=$(dpkg --print-architecture)
	if [[ $ENGINE_MODE == local ]]; then
		for pkg in "${ENGINE_DEBS[@]}"; do wanted+=("$pkg:$native"); done
	fi
	for arch in "${BUSYBOX_ARCHES[@]}"; do wanted+=("busybox-static:$arch"); done
	local missing=()
	for spec in "${wanted[@]}"; do
		[[ -n $(deb_path "${spec%%:*}" "${spec##*:}") ]] || missing+=("$spec")
	done
	((${#missing[@]} == 0)) && return
	ensure_trixie_keyring
	private_apt_update
	mkdir -p "$DEB_DIR"
	# apt downloads as the unprivileged _apt user where it can.
	chown _apt:root "$DEB_DIR" 2>/dev/null || true
	log "apt-get download ${missing[*]}"
	(cd "$DEB_DIR" && papt apt-get download -qq "${missing[@]}")
}

# Extracts the engine debs into $PREFIX; redone when the set of debs changes
# (`up` then restarts an engine that still runs the replaced binaries).
ensure_prefix() {
	local debs=() pkg native
	native=$(dpkg --print-architecture)
	for pkg in "${ENGINE_DEBS[@]}"; do
		debs+=("$(deb_path "$pkg" "$native")")
		local ver
		ver=$(dpkg-deb -f "${debs[-1]}" Version)
		[[ ${ver#*:} == "${ENGINE_SERIES[$pkg]:-}"* ]] ||
			log "warning: $pkg is $ver, the stack was written for ${ENGINE_SERIES[$pkg]}x"
	done
	local stamp
	stamp=$(printf '%s\n' "${debs[@]##*/}")
	[[ -x $PREFIX/usr/sbin/dockerd && $(cat "$PREFIX/.debs" 2>/dev/null) == "$stamp" ]] && return
	log "extracting ${debs[*]##*/} into $PREFIX"
	rm -rf "$PREFIX.new"
	mkdir -p "$PREFIX.new"
	for pkg in "${debs[@]}"; do dpkg-deb -x "$pkg" "$PREFIX.new"; done
	echo "$stamp" >"$PREFIX.new/.debs"
	rm -rf "$PREFIX"
	mv "$PREFIX.new" "$PREFIX"
}

# The system docker CLI finds the buildx plugin in /usr/local/lib/docker/cli-plugins.
# A buildx it already has is left alone. This script's own docker calls use a
# private DOCKER_CONFIG whose cli-plugins dir points at the prefix's buildx.
ensure_buildx_plugin() {
	mkdir -p "$DOCKER_CFG/cli-plugins"
	ln -sfn "$BUILDX_BIN" "$DOCKER_CFG/cli-plugins/docker-buildx"
	local link=/usr/local/lib/docker/cli-plugins/docker-buildx
	if [[ -L $link && $(readlink "$link") == "$BUILDX_BIN" ]]; then
		return
	fi
	if docker buildx version >/dev/null 2>&1; then
		return
	fi
	log "linking $link -> $BUILDX_BIN"
	mkdir -p "${link%/*}"
	ln -sfn "$BUILDX_BIN" "$link"
}

install_done() {
	[[ -z $(missing_apt_packages) ]] || return 1
	[[ -x $BUILDKITD && -x $BUILDCTL ]] || return 1
	local arch
	for arch in "${BUSYBOX_ARCHES[@]}"; do
		[[ -n $(deb_path busybox-static "$arch") ]] || return 1
	done
	if [[ $ENGINE_MODE == local ]]; then
		[[ -x $PREFIX/usr/sbin/dockerd && -x $PREFIX/usr/bin/containerd && -x $BUILDX_BIN ]] || return 1
		local pkg
		for pkg in "${ENGINE_DEBS[@]}"; do
			grep -q "^${pkg}_" "$PREFIX/.debs" 2>/dev/null || return 1
		done
		[[ -L $DOCKER_CFG/cli-plugins/docker-buildx ]] || return 1
		command -v docker >/dev/null || return 1
		docker buildx version >/dev/null 2>&1 || return 1
	fi
}

# Without a docker CLI of its own the machine gets Debian 13's.
ensure_docker_cli() {
	[[ " ${ENGINE_DEBS[*]} " == *" docker-cli "* ]] || return 0
	[[ $(readlink "$DOCKER_CLI_LINK" 2>/dev/null) == "$PREFIX/usr/bin/docker" ]] && return
	[[ -e $DOCKER_CLI_LINK || -L $DOCKER_CLI_LINK ]] &&
		die "no docker CLI on PATH, but $DOCKER_CLI_LINK exists: fix PATH"
	log "no docker CLI on PATH: linking $DOCKER_CLI_LINK -> $PREFIX/usr/bin/docker"
	mkdir -p "${DOCKER_CLI_LINK%/*}"
	ln -sfn "$PREFIX/usr/bin/docker" "$DOCKER_CLI_LINK"
	hash -r
}

cmd_install() {
	need_root install
	decide_engine_mode
	install_apt_packages
	fetch_debs
	if [[ $ENGINE_MODE == local ]]; then
		ensure_prefix
		ensure_docker_cli
		ensure_buildx_plugin
	fi
	quiet_system_registry
	build_buildkit
}

# buildkitd and buildctl, built from Debian's BuildKit source by the script
# next to this one (a no-op once built; about 4 minutes the first time).
build_buildkit() {
	log "scripts/buildkitd-build.sh (BK_ROOT=$BUILDKIT_DIR)"
	BK_ROOT=$BUILDKIT_DIR BK_MIRROR=$MA_MIRROR bash "$SCRIPT_DIR/buildkitd-build.sh" >&2 ||
		die "scripts/buildkitd-build.sh failed"
	[[ -x $BUILDKITD && -x $BUILDCTL ]] || die "scripts/buildkitd-build.sh left no $BUILDKITD and $BUILDCTL"
}

# ------------------------------------------------------------------ binfmt --

# The host's binfmt_misc must be mounted for qemu handlers to be registered
# and used. `up` only mounts it: registering the arm handlers is the job of
# the action under test (through the stand-in image).
mount_binfmt() {
	[[ -e /proc/sys/fs/binfmt_misc/status ]] && return
	log "mounting binfmt_misc on /proc/sys/fs/binfmt_misc"
	mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
}

registered_qemu_handlers() {
	local e
	for e in /proc/sys/fs/binfmt_misc/qemu-*; do
		if [[ -e $e ]]; then echo "${e##*/}"; fi
	done
}

cmd_binfmt_clear() {
	need_root binfmt-clear
	mount_binfmt
	local h
	for h in $(registered_qemu_handlers); do
		log "unregistering binfmt handler $h"
		echo -1 >"/proc/sys/fs/binfmt_misc/$h"
	done
}

# ------------------------------------------------------------------ engine --

engine_answers() { timeout 10 "${DK[@]}" info >/dev/null 2>&1; }

start_containerd() {
	local pid
	if pidfile_runs "$RUN_DIR/containerd.pid" "$PREFIX/usr/bin/containerd" && [[ -S $CONTAINERD_SOCK ]] &&
		"$PREFIX/usr/bin/ctr" --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; then
		return
	fi
	# One that runs but does not answer is replaced.
	stop_pidfile "$RUN_DIR/containerd.pid" "$PREFIX/usr/bin/containerd" 15
	mkdir -p "$ENGINE_DIR/containerd" "$RUN_DIR/containerd-state" "$LOG_DIR"
	# Only what dockerd needs: the CRI plugin (Kubernetes) is switched off, and
	# every socket and directory is private to this stack.
	cat >"$MA_STATE/containerd.toml" <<EOF
version = 2
root = "$ENGINE_DIR/containerd"
state = "$RUN_DIR/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
EOF
	rm -f "$CONTAINERD_SOCK" "$CONTAINERD_SOCK.ttrpc"
	log "starting containerd ($CONTAINERD_SOCK)"
	pid=$(spawn "$LOG_DIR/containerd.log" env PATH="$ENGINE_PATH" \
		"$PREFIX/usr/bin/containerd" --config "$MA_STATE/containerd.toml")
	echo "$pid" >"$RUN_DIR/containerd.pid"
	local i
	for ((i = 0; i < 300; i++)); do
		[[ -S $CONTAINERD_SOCK ]] &&
			"$PREFIX/usr/bin/ctr" --address "$CONTAINERD_SOCK" version >/dev/null 2>&1 && return
		pid_alive "$pid" || break
		sleep 0.1
	done
	tail -n 20 "$LOG_DIR/containerd.log" >&2 || true
	die "containerd did not come up (log: $LOG_DIR/containerd.log)"
}

start_dockerd() {
	local pid
	if pidfile_runs "$RUN_DIR/dockerd.pid" "$PREFIX/usr/sbin/dockerd" && engine_answers; then
		return
	fi
	# One that runs but does not answer is replaced; a stale pid file would
	# make dockerd refuse to start if its pid had been reused.
	stop_pidfile "$RUN_DIR/dockerd.pid" "$PREFIX/usr/sbin/dockerd" 30
	mkdir -p "$ENGINE_DIR/docker" "$RUN_DIR/docker-exec" "$LOG_DIR"
	# containerd-snapshotter: images live in containerd's store, which is what
	# lets the docker driver of buildx build and push multi-platform images.
	# 127.0.0.0/8 is plain-http by default already; the list makes it explicit.
	local regs
	regs=$(printf '"127.0.0.1:%s",' $(seq "$MA_PORT_BASE" $((MA_PORT_BASE + 9))))
	cat >"$MA_STATE/daemon.json" <<EOF
{
  "features": { "containerd-snapshotter": true },
  "insecure-registries": [${regs%,}]
}
EOF
	rm -f "$DOCKER_SOCK"
	# No bridge and no iptables: the stack must not touch the host's network
	# set-up (containers get --network host or none). The cgroup parent keeps
	# its containers apart from another engine's. The socket belongs to group
	# root (Debian has no "docker" group without docker.io installed). The pid
	# file is dockerd's own.
	log "starting dockerd ($DOCKER_SOCK)"
	pid=$(spawn "$LOG_DIR/dockerd.log" env PATH="$ENGINE_PATH" \
		"$PREFIX/usr/sbin/dockerd" \
		--config-file "$MA_STATE/daemon.json" \
		--host "unix://$DOCKER_SOCK" \
		--containerd "$CONTAINERD_SOCK" \
		--data-root "$ENGINE_DIR/docker" \
		--exec-root "$RUN_DIR/docker-exec" \
		--pidfile "$RUN_DIR/dockerd.pid" \
		--cgroup-parent multiarch-stack --group root \
		--bridge=none --iptables=false --ip6tables=false --ip-forward=false \
		--userland-proxy-path "$PREFIX/usr/sbin/docker-proxy")
	local i
	for ((i = 0; i < 600; i++)); do
		[[ -S $DOCKER_SOCK ]] && engine_answers && return
		pid_alive "$pid" || break
		sleep 0.1
	done
	tail -n 20 "$LOG_DIR/dockerd.log" >&2 || true
	die "dockerd did not answer 'docker info' (log: $LOG_DIR/dockerd.log)"
}

# Prefix first (containerd-shim-runc-v2, docker-proxy), then Debian 12's
# /usr/sbin/runc. The prefix has no runc of its own.
ENGINE_PATH=$PREFIX/usr/bin:$PREFIX/usr/sbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

start_engine() {
	mkdir -p "$RUN_DIR" "$LOG_DIR"
	local d
	for d in dockerd containerd; do
		if [[ $(readlink "/proc/$(read_pid "$RUN_DIR/$d.pid")/exe" 2>/dev/null) == *" (deleted)" ]]; then
			log "the engine binaries were replaced: restarting dockerd and containerd"
			stop_engine
			break
		fi
	done
	start_containerd
	start_dockerd
}

stop_engine() {
	stop_pidfile "$RUN_DIR/dockerd.pid" "$PREFIX/usr/sbin/dockerd" 30
	stop_pidfile "$RUN_DIR/containerd.pid" "$PREFIX/usr/bin/containerd" 15
	rm -f "$DOCKER_SOCK" "$CONTAINERD_SOCK" "$CONTAINERD_SOCK.ttrpc"
	release_mounts "$MA_STATE" "$BK_STATE"
}

# release_mounts DIR [SPARE]: unmounts, deepest first, every mount below DIR
# except those below SPARE. dockerd leaves mounts behind when it exits (the
# bind mount of the host's network namespace under its exec-root, its
# data-root bind mount, and any rootfs of a container that was killed with
# it); so may a killed buildkitd (overlay rootfs of its build steps). With the
# engine stopped, everything under the state dir but the buildkitd dirs is
# ours to unmount; a buildkitd's dir once that buildkitd is stopped.
release_mounts() {
	local mp
	awk -v dir="$1/" -v spare="${2:+$2/}" \
		'index($2, dir) == 1 && (spare == "" || index($2, spare) != 1) { print $2 }' /proc/self/mounts |
		sort -r | while read -r mp; do
			umount -l "$mp" 2>/dev/null || log "warning: could not unmount $mp"
		done
}

# -------------------------------------------------------------- registries --

REGISTRY_BIN=/usr/bin/docker-registry # Debian's CNCF Distribution 2.8

valid_registry_name() { [[ $1 =~ ^[a-z0-9][a-z0-9_-]*$ ]]; }

registry_http_code() { # port [user pass]
	local args=(-s -o /dev/null -w '%{http_code}' --max-time 5)
	(($# == 3)) && args+=(-u "$2:$3")
	curl "${args[@]}" "http://127.0.0.1:$1/v2/" 2>/dev/null || true
}

# A registry whose storage is about to be wiped is simply killed (TERM makes
# Distribution wait for in-flight requests, over a second each time).
stop_registry() { # name [TERM|KILL]
	stop_pidfile "$RUN_DIR/registry-$1.pid" "$REGISTRY_BIN" 10 "${2:-TERM}"
	rm -f "$RUN_DIR/registry-$1.meta"
}

# start_registry NAME PORT USER PASSWORD KEEP_STORAGE
# A Distribution registry on 127.0.0.1:PORT with deletes enabled and, when
# USER is given, htpasswd (bcrypt) auth. Storage is wiped unless KEEP_STORAGE=1.
start_registry() {
	local name=$1 port=$2 user=$3 pass=$4 keep=$5
	valid_registry_name "$name" || die "bad registry name '$name'"
	if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then die "bad port '$port'"; fi
	local dir=$REG_DIR/$name
	local pid
	local meta="$port $user"
	if [[ $keep == 1 ]] && pidfile_runs "$RUN_DIR/registry-$name.pid" "$REGISTRY_BIN" &&
		[[ $(cat "$RUN_DIR/registry-$name.meta" 2>/dev/null) == "$meta" ]]; then
		return # a keeper that already runs as asked: nothing to do
	fi
	if [[ $keep == 1 ]]; then stop_registry "$name"; else stop_registry "$name" KILL; fi
	if port_busy "$port"; then
		local other
		other=$(grep -l "^$port " "$RUN_DIR"/registry-*.meta 2>/dev/null | head -n1 || true)
		other=${other##*/registry-}
		[[ -n $other ]] && die "port 127.0.0.1:$port is taken by registry ${other%.meta} of this stack"
		die "port 127.0.0.1:$port is taken by another program"
	fi
	mkdir -p "$dir" "$LOG_DIR"
	[[ $keep == 1 ]] || rm -rf "$dir/storage"
	mkdir -p "$dir/storage"
	local auth=''
	if [[ -n $user ]]; then
		# -i: the password comes from stdin, so no shell or argv mangles it.
		printf '%s\n' "$pass" | htpasswd -B -i -c "$dir/htpasswd" "$user" 2>/dev/null ||
			die "htpasswd failed for $name"
		auth=$(printf 'auth:\n  htpasswd:\n    realm: "%s"\n    path: "%s"\n' "$name" "$dir/htpasswd")
	else
		rm -f "$dir/htpasswd"
	fi
	cat >"$dir/config.yml" <<EOF
# registry "$name" of the multiarch-action test stack (scripts/stack.sh)
version: 0.1
log:
  level: info
  fields:
    service: registry-$name
storage:
  filesystem:
    rootdirectory: "$dir/storage"
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: "127.0.0.1:$port"
  secret: "$(head -c 24 /dev/urandom | base64)"
  headers:
    X-Content-Type-Options: [nosniff]
$auth
EOF
	chmod 0600 "$dir/config.yml" # it holds the http secret
	log "starting registry $name on 127.0.0.1:$port${user:+ (user $user)}"
	pid=$(spawn "$LOG_DIR/registry-$name.log" "$REGISTRY_BIN" serve "$dir/config.yml")
	echo "$pid" >"$RUN_DIR/registry-$name.pid"
	echo "$meta" >"$RUN_DIR/registry-$name.meta"
	local i code
	for ((i = 0; i < 100; i++)); do
		code=$(registry_http_code "$port")
		[[ $code == 200 || $code == 401 ]] && break
		pid_alive "$pid" || break
		sleep 0.1
	done
	if ! pid_alive "$pid" || [[ $code != 200 && $code != 401 ]]; then
		tail -n 20 "$LOG_DIR/registry-$name.log" >&2 || true
		die "registry $name did not come up (log: $LOG_DIR/registry-$name.log)"
	fi
	verify_registry_auth "$name" "$port" "$user" "$pass"
}

# Checks that anonymous access is refused and the exact password accepted.
verify_registry_auth() {
	local name=$1 port=$2 user=$3 pass=$4
	if [[ -z $user ]]; then
		[[ $(registry_http_code "$port") == 200 ]] || die "registry $name should not ask for auth"
		return
	fi
	[[ $(registry_http_code "$port") == 401 ]] || die "registry $name accepts anonymous requests"
	[[ $(registry_http_code "$port" "$user" "$pass") == 200 ]] ||
		die "registry $name refuses the password of $user"
	[[ $(registry_http_code "$port" "$user" "${pass}x") == 401 ]] ||
		die "registry $name accepts a wrong password"
}

start_fixed_registries() {
	local name
	for name in "${REGISTRIES[@]}"; do
		local keep=0
		[[ $name == base ]] && keep=1
		start_registry "$name" "${REG_PORT[$name]}" "${REG_USER[$name]}" "${REG_PASS[$name]}" "$keep"
	done
}

cmd_registry() {
	need_root registry
	(($# == 2 || $# == 4)) || die "usage: stack.sh registry NAME PORT [USER PASSWORD_ENV_VAR]"
	local name=$1 port=$2 user=${3:-} pass=''
	if [[ -n $user ]]; then
		[[ $4 =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "'$4' is not an environment variable name"
		[[ -n ${!4+x} ]] || die "environment variable $4 (the password) is not set"
		pass=${!4}
	fi
	take_lock
	start_registry "$name" "$port" "$user" "$pass" 0
	echo "127.0.0.1:$port"
}

cmd_stop_registry() {
	need_root stop-registry
	(($# == 1)) || die "usage: stack.sh stop-registry NAME"
	valid_registry_name "$1" || die "bad registry name '$1'"
	take_lock
	stop_registry "$1"
}

# --------------------------------------------------------------- buildkitd --

# The config both daemons read. Per-daemon settings (root, address, platform,
# TLS) are flags; the rest is here: the OCI worker on Debian 12's runc with the
# host's network (no CNI), no containerd worker, and the stack's registries
# (127.0.0.1:base..base+9, as in the engine's daemon.json) as plain-http ones.
write_buildkitd_config() {
	mkdir -p "$BK_STATE"
	local port tmp=$BK_CONFIG.tmp
	{
		echo "# buildkitd config of the multiarch-action test stack (scripts/stack.sh)"
		echo
		echo "[worker.oci]"
		echo "  enabled = true"
		echo "  binary = \"/usr/sbin/runc\""
		echo "  networkMode = \"host\""
		echo "  gc = true"
		echo
		echo "[worker.containerd]"
		echo "  enabled = false"
		for port in $(seq "$MA_PORT_BASE" $((MA_PORT_BASE + 9))); do
			echo
			echo "[registry.\"127.0.0.1:$port\"]"
			echo "  http = true"
			echo "  insecure = true"
		done
	} >"$tmp"
	# Rewritten only when it changes, so that its mtime means something.
	if cmp -s "$tmp" "$BK_CONFIG"; then rm -f "$tmp"; else mv "$tmp" "$BK_CONFIG"; fi
}

# The arm64 daemon's TLS files, made once: a CA (its key is not kept), a
# server certificate for IP 127.0.0.1 and a client certificate, EC P-256,
# ten years. Made again, all of them, when one is missing or does not verify.
ensure_buildkit_tls() {
	local f ok=1
	for f in ca.pem server.pem server-key.pem cert.pem key.pem; do
		[[ -s $BK_TLS/$f ]] || ok=0
	done
	if ((ok)) && openssl verify -CAfile "$BK_TLS/ca.pem" -purpose sslserver "$BK_TLS/server.pem" >/dev/null 2>&1 &&
		openssl verify -CAfile "$BK_TLS/ca.pem" -purpose sslclient "$BK_TLS/cert.pem" >/dev/null 2>&1; then
		return
	fi
	log "making TLS certificates for the arm64 buildkitd in $BK_TLS"
	local tmp=$BK_TLS.new
	rm -rf "$tmp"
	mkdir -p "$tmp"
	chmod 0755 "$tmp"
	cat >"$tmp/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
CNF
	local key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
	(
		cd "$tmp"
		umask 077
		openssl req -x509 -new -config openssl.cnf -extensions ca "${key[@]}" -days 3650 \
			-subj "/CN=multiarch-stack buildkit CA" -keyout ca-key.pem -out ca.pem
		local leaf crt keyfile cn
		for leaf in server client; do
			if [[ $leaf == server ]]; then
				crt=server.pem keyfile=server-key.pem cn=127.0.0.1
			else
				crt=cert.pem keyfile=key.pem cn=multiarch-stack-client
			fi
			openssl req -new -config openssl.cnf "${key[@]}" -subj "/CN=$cn" \
				-keyout "$keyfile" -out "$leaf.csr"
			openssl x509 -req -in "$leaf.csr" -CA ca.pem -CAkey ca-key.pem \
				-set_serial "0x$(openssl rand -hex 16)" -days 3650 \
				-extfile openssl.cnf -extensions "$leaf" -out "$crt"
		done
		rm -f ca-key.pem ./*.csr openssl.cnf
		chmod 0644 ca.pem server.pem cert.pem
	) >/dev/null 2>"$tmp.log" || {
		cat "$tmp.log" >&2
		die "openssl failed to make the buildkitd TLS files"
	}
	rm -f "$tmp.log"
	rm -rf "$BK_TLS"
	mv "$tmp" "$BK_TLS"
}

# buildkitd_cmd NAME: sets BK_CMD to the daemon's command line.
BK_CMD=()
buildkitd_cmd() {
	local name=$1
	BK_CMD=(env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		"$BUILDKITD" --config "$BK_CONFIG" --root "$BK_STATE/$name"
		--addr "${BK_ADDR[$name]}"
		--oci-worker-platform "${BK_PLATFORM[$name]}"
		--otel-socket-path "$RUN_DIR/buildkitd-$name-otel.sock")
	if [[ ${BK_ADDR[$name]} == tcp://* ]]; then
		BK_CMD+=(--tlscacert "$BK_TLS/ca.pem" --tlscert "$BK_TLS/server.pem" --tlskey "$BK_TLS/server-key.pem")
	fi
}

# What a running daemon was started with: its command line, the config and,
# for the tcp one, the certificates. `up` restarts a daemon when this changes.
buildkitd_meta() {
	local name=$1
	buildkitd_cmd "$name"
	{
		printf '%s\n' "${BK_CMD[@]}"
		cat "$BK_CONFIG"
		if [[ ${BK_ADDR[$name]} == tcp://* ]]; then cat "$BK_TLS/ca.pem" "$BK_TLS/server.pem"; fi
	} | sha256sum | cut -d' ' -f1
}

# True when daemon NAME lists its workers (through its client certificate
# for the tcp one).
buildkitd_answers() {
	local args=(--addr "${BK_ADDR[$1]}" --timeout 5)
	if [[ ${BK_ADDR[$1]} == tcp://* ]]; then args+=(--tlsdir "$BK_TLS"); fi
	timeout 10 "$BUILDCTL" "${args[@]}" debug workers >/dev/null 2>&1
}

# The build-step containers of daemon NAME, killed and deleted. buildkitd
# calls runc without --root, so they are listed in runc's default state dir
# (/run/runc) among any others; only those whose bundle is in NAME's root dir
# are touched. A running one keeps buildkitd from stopping on TERM (it waits
# for its builds), and one outlives a killed buildkitd.
kill_build_containers() {
	local name=$1 id
	[[ -x /usr/sbin/runc ]] || return 0
	/usr/sbin/runc list --format json 2>/dev/null |
		jq -r --arg dir "$BK_STATE/$name/" '.[]? | select(.bundle | startswith($dir)) | .id' 2>/dev/null |
		while read -r id; do
			log "killing build container $id of buildkitd $name"
			/usr/sbin/runc delete --force "$id" >/dev/null 2>&1 || log "warning: runc delete --force $id failed"
		done
}

stop_buildkitd() {
	local name=$1
	kill_build_containers "$name"
	stop_pidfile "$RUN_DIR/buildkitd-$name.pid" "$BUILDKITD" 15
	kill_build_containers "$name"
	rm -f "$RUN_DIR/buildkitd-$name.meta" "$RUN_DIR/buildkitd-$name.sock" "$RUN_DIR/buildkitd-$name-otel.sock"
	release_mounts "$BK_STATE/$name"
}

# launch_buildkitd NAME: starts the daemon unless it already runs as asked
# and answers; prints its pid when it started one.
launch_buildkitd() {
	local name=$1 meta pid
	local pidfile=$RUN_DIR/buildkitd-$name.pid
	meta=$(buildkitd_meta "$name")
	pid=$(read_pid "$pidfile")
	if pidfile_runs "$pidfile" "$BUILDKITD" &&
		[[ $(readlink "/proc/$pid/exe" 2>/dev/null) != *" (deleted)" ]] &&
		[[ $(cat "$RUN_DIR/buildkitd-$name.meta" 2>/dev/null) == "$meta" ]] &&
		buildkitd_answers "$name"; then
		return
	fi
	[[ -e $pidfile ]] && log "restarting buildkitd $name (settings or binary changed, or it does not answer)"
	stop_buildkitd "$name"
	local addr=${BK_ADDR[$name]}
	if [[ $addr == tcp://* ]] && port_busy "${addr##*:}"; then
		die "port ${addr#tcp://} (buildkitd $name) is taken by another program"
	fi
	mkdir -p "$BK_STATE/$name" "$LOG_DIR"
	log "starting buildkitd $name on $addr (${BK_PLATFORM[$name]})"
	buildkitd_cmd "$name"
	pid=$(spawn "$LOG_DIR/buildkitd-$name.log" "${BK_CMD[@]}")
	echo "$pid" >"$pidfile"
	echo "$meta" >"$RUN_DIR/buildkitd-$name.meta"
	echo "$pid"
}

# Starts both daemons side by side, then waits up to 20 s for each to list
# its workers.
start_buildkitds() {
	[[ -x $BUILDKITD && -x $BUILDCTL ]] || die "no $BUILDKITD (run 'scripts/stack.sh install')"
	mkdir -p "$RUN_DIR" "$LOG_DIR"
	write_buildkitd_config
	ensure_buildkit_tls
	local name pid
	declare -A started=()
	for name in "${BUILDKITDS[@]}"; do
		pid=$(launch_buildkitd "$name")
		[[ -z $pid ]] || started[$name]=$pid
	done
	local deadline=$((SECONDS + 20))
	for name in "${!started[@]}"; do
		pid=${started[$name]}
		until buildkitd_answers "$name"; do
			if ! pid_alive "$pid" || ((SECONDS >= deadline)); then
				tail -n 20 "$LOG_DIR/buildkitd-$name.log" >&2 || true
				die "buildkitd $name did not answer on ${BK_ADDR[$name]} (log: $LOG_DIR/buildkitd-$name.log)"
			fi
			sleep 0.2
		done
	done
}

# ------------------------------------------------------------- base images --

# True when the registry has a manifest (or index) under that reference.
image_in_registry() { # 127.0.0.1:PORT/repo:tag
	local ref=$1 hostport repo tag
	hostport=${ref%%/*}
	repo=${ref#*/}
	tag=${repo##*:}
	repo=${repo%:*}
	local accept=application/vnd.oci.image.index.v1+json
	accept+=,application/vnd.docker.distribution.manifest.list.v2+json
	accept+=,application/vnd.oci.image.manifest.v1+json
	accept+=,application/vnd.docker.distribution.manifest.v2+json
	[[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -I -H "Accept: $accept" \
		"http://$hostport/v2/$repo/manifests/$tag") == 200 ]]
}

# Debian architecture -> OCI platform and qemu name.
declare -A DEB_PLATFORM=([amd64]=linux/amd64 [arm64]=linux/arm64 [armhf]=linux/arm/v7)
declare -A DEB_QEMU=([amd64]=x86_64 [arm64]=aarch64 [armhf]=arm)

# Runs a binary of a Debian architecture on this host, through qemu-user
# directly when it is foreign (no binfmt handler needed for that).
run_for_arch() {
	local arch=$1
	shift
	if [[ $arch == "$(dpkg --print-architecture)" ]]; then
		"$@"
	else
		"/usr/bin/qemu-${DEB_QEMU[$arch]}-static" "$@"
	fi
}

# A minimal rootfs tarball: busybox from busybox-static, its applets as
# symlinks at the paths busybox itself lists, root's passwd/group entries.
busybox_tarball() {
	local arch=$1 deb out stamp
	deb=$(deb_path busybox-static "$arch")
	[[ -n $deb ]] || die "no busybox-static deb for $arch in $DEB_DIR (run install)"
	out=$BASE_DIR/busybox-$arch.tar
	stamp=${deb##*/}
	if [[ -s $out && $(cat "$out.src" 2>/dev/null) == "$stamp" ]]; then
		echo "$out"
		return
	fi
	log "making busybox rootfs for $arch from $stamp"
	local tmp
	tmp=$(mktemp -d)
	dpkg-deb -x "$deb" "$tmp/deb"
	local root=$tmp/root bb
	bb=$(find "$tmp/deb" -path '*bin/busybox' -type f | head -n1)
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev}
	install -m 0755 "$bb" "$root/bin/busybox"
	local applet
	while read -r applet; do
		[[ $applet == */* && $applet != bin/busybox && ! -e $root/$applet ]] || continue
		mkdir -p "$root/${applet%/*}"
		ln -s /bin/busybox "$root/$applet"
	done < <(run_for_arch "$arch" "$root/bin/busybox" --list-full)
	[[ -L $root/bin/sh ]] || die "busybox for $arch has no sh applet"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
	chmod 1777 "$root/tmp"
	chmod 0700 "$root/root"
	mkdir -p "$BASE_DIR"
	tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 \
		-C "$root" -cf "$out.tmp" .
	mv "$out.tmp" "$out"
	echo "$stamp" >"$out.src"
	rm -rf "$tmp"
	echo "$out"
}

# push_multiarch NAME:TAG CMD-JSON ARCH=TARBALL...
# Imports each rootfs tarball as a single-platform image, pushes it as
# NAME:TAG-ARCH, then joins them into one index NAME:TAG with imagetools.
# Per-platform pushes work on any docker engine (also without the containerd
# image store), and the per-arch tags stay available to the tests.
push_multiarch() {
	local ref=$1 cmd=$2
	shift 2
	local parts=() spec arch tarball platform suffix tagged
	for spec in "$@"; do
		arch=${spec%%=*}
		tarball=${spec#*=}
		platform=${DEB_PLATFORM[$arch]}
		suffix=${platform#linux/}
		tagged=$ref-${suffix//\//} # :1-amd64, :1-arm64, :1-armv7
		log "importing $tarball as $tagged ($platform)"
		dk import --platform "$platform" -c "CMD $cmd" "$tarball" "$tagged" >/dev/null
		dk push -q "$tagged" >/dev/null
		dk image rm "$tagged" >/dev/null
		parts+=("$tagged")
	done
	log "joining ${parts[*]} into $ref"
	local out
	if ! out=$(dk buildx imagetools create -t "$ref" "${parts[@]}" 2>&1); then
		printf '%s\n' "$out" >&2
		die "imagetools create $ref failed"
	fi
}

ensure_busybox_image() {
	if image_in_registry "$BUSYBOX_IMAGE"; then
		return
	fi
	local specs=() arch
	for arch in "${BUSYBOX_ARCHES[@]}"; do
		specs+=("$arch=$(busybox_tarball "$arch")")
	done
	push_multiarch "$BUSYBOX_IMAGE" '["sh"]' "${specs[@]}"
}

# The stand-in for tonistiigi/binfmt: Debian 12's static qemu binaries on the
# busybox image. The build context is hashed, and the hash is pushed as an
# extra tag, so an edited binfmt.sh or a new qemu package causes a rebuild.
ensure_standin_image() {
	local table name arch def magic mask emus=()
	table=$(mktemp)
	# Emulators the stand-in offers, named as tonistiigi/binfmt names them.
	# Debian ships no binfmt definition for the host's own architectures, so
	# those drop out by themselves.
	for name in aarch64:arm64 arm:arm riscv64:riscv64 ppc64le:ppc64le s390x:s390x \
		i386:386 mips64el:mips64le mips64:mips64 loongarch64:loong64 x86_64:amd64; do
		arch=${name#*:}
		name=${name%%:*}
		def=/usr/share/binfmts/qemu-$name
		[[ -f $def && -x /usr/bin/qemu-$name-static ]] || continue
		magic=$(awk '$1 == "magic" { print $2 }' "$def")
		mask=$(awk '$1 == "mask" { print $2 }' "$def")
		[[ -n $magic && -n $mask ]] || continue
		echo "qemu-$name $arch $magic $mask" >>"$table"
		emus+=("$name")
	done
	# The image is named after what goes into it: the two source files, the
	# table and the qemu package version (hashing the binaries takes longer).
	local hash
	hash=$({
		cat "$STANDIN_SRC/Dockerfile" "$STANDIN_SRC/binfmt.sh" "$table"
		dpkg-query -W -f='${Version}\n' qemu-user-static
	} | sha256sum | cut -c1-16)
	local hashref=${STANDIN_IMAGE%:*}:ctx-$hash
	if image_in_registry "$STANDIN_IMAGE" && image_in_registry "$hashref"; then
		rm -f "$table"
		return
	fi
	log "building $STANDIN_IMAGE (stand-in for tonistiigi/binfmt)"
	local ctx
	ctx=$(mktemp -d)
	mkdir -p "$ctx/qemu"
	cp "$STANDIN_SRC/Dockerfile" "$STANDIN_SRC/binfmt.sh" "$ctx/"
	chmod 0755 "$ctx/binfmt.sh"
	mv "$table" "$ctx/emulators.table"
	for name in "${emus[@]}"; do
		cp "/usr/bin/qemu-$name-static" "$ctx/qemu/qemu-$name"
	done
	# Only COPY steps, so nothing runs under emulation; the host's platform
	# (its qemu binaries are the host's); no provenance attestation, which
	# the real image does not have either.
	local platform
	platform=linux/$(dk version --format '{{.Server.Arch}}')
	dk buildx build --quiet --platform "$platform" --provenance=false --load \
		--build-arg "BASE_IMAGE=$BUSYBOX_IMAGE" -t "$STANDIN_IMAGE" "$ctx" >/dev/null
	dk tag "$STANDIN_IMAGE" "$hashref"
	dk push -q "$STANDIN_IMAGE" >/dev/null
	dk push -q "$hashref" >/dev/null
	dk image rm "$hashref" >/dev/null
	rm -rf "$ctx"
}

# 127.0.0.1:5000/base/debian:bookworm from mmdebstrap minbase tarballs, one per
# platform, cached in $BASE_DIR. Foreign architectures run under qemu through
# binfmt_misc, so this registers Debian's qemu-aarch64/qemu-arm handlers
# (update-binfmts, F flag set by Debian) for its own run and unregisters the
# ones it added afterwards: the tests expect the action to install them.
ENABLED_BY_US=()
restore_binfmt() {
	local h
	for h in "${ENABLED_BY_US[@]}"; do
		log "unregistering binfmt handler $h again"
		update-binfmts --disable "$h" >/dev/null 2>&1 || echo -1 >"/proc/sys/fs/binfmt_misc/$h" || true
	done
	ENABLED_BY_US=()
}

debian_tarball() {
	local arch=$1
	local out=$BASE_DIR/debian-bookworm-$arch.tar
	if [[ -s $out ]]; then
		echo "$out"
		return
	fi
	mkdir -p "$BASE_DIR"
	log "mmdebstrap --variant=minbase --arch=$arch bookworm (about 20 s native, 100 s under qemu)"
	local t0=$SECONDS
	# /dev entries are dropped: docker provides /dev at run time. Its
	# progress lines go to stderr like this script's own.
	mmdebstrap --variant=minbase --arch="$arch" --format=tar bookworm - "$MA_MIRROR" \
		2> >(sed -u 's/^/stack: mmdebstrap: /' >&2) |
		mmtarfilter --path-exclude='/dev/*' >"$out.tmp"
	mv "$out.tmp" "$out"
	log "debian rootfs for $arch: $((SECONDS - t0)) s, $(du -h "$out" | cut -f1)"
	echo "$out"
}

cmd_base_debian() {
	need_root base-debian
	take_lock
	load_mode
	engine_answers || die "the engine does not answer: run 'scripts/stack.sh up' first"
	image_in_registry "$BUSYBOX_IMAGE" || die "the base registry is not up: run 'scripts/stack.sh up' first"
	if image_in_registry "$DEBIAN_IMAGE"; then
		log "$DEBIAN_IMAGE is already in the base registry"
		return
	fi
	mount_binfmt
	local native arch h
	native=$(dpkg --print-architecture)
	trap restore_binfmt EXIT
	for arch in "${BUSYBOX_ARCHES[@]}"; do
		[[ $arch == "$native" || -s $BASE_DIR/debian-bookworm-$arch.tar ]] && continue
		h=qemu-${DEB_QEMU[$arch]}
		if [[ ! -e /proc/sys/fs/binfmt_misc/$h ]]; then
			log "registering binfmt handler $h for mmdebstrap"
			update-binfmts --enable "$h"
			ENABLED_BY_US+=("$h")
		fi
	done
	local specs=()
	for arch in "${BUSYBOX_ARCHES[@]}"; do
		specs+=("$arch=$(debian_tarball "$arch")")
	done
	restore_binfmt
	trap - EXIT
	push_multiarch "$DEBIAN_IMAGE" '["bash"]' "${specs[@]}"
}

# ---------------------------------------------------------------- up, down --

# The engine mode that `up` chose.
load_mode() {
	local mode=''
	[[ -s $MODE_FILE ]] && read -r mode _ <"$MODE_FILE"
	[[ -n $mode ]] || die "the stack is not up: run 'scripts/stack.sh up' first"
	set_engine_mode "$mode"
}

cmd_up() {
	need_root up
	local t0=$SECONDS
	take_lock
	# A private engine started earlier wins over one that appeared since.
	if pidfile_runs "$RUN_DIR/dockerd.pid" "$PREFIX/usr/sbin/dockerd"; then
		set_engine_mode local
	else
		decide_engine_mode
	fi
	install_done || cmd_install
	quiet_system_registry
	mkdir -p "$RUN_DIR" "$LOG_DIR"
	mount_binfmt
	if [[ $ENGINE_MODE == local ]]; then
		start_engine
		echo local >"$MODE_FILE"
	else
		echo "external ${DOCKER_HOST:-}" >"$MODE_FILE"
	fi
	echo "$MA_PORT_BASE" >"$MA_STATE/port-base"
	start_fixed_registries
	start_buildkitds
	ensure_busybox_image
	ensure_standin_image
	local h
	h=$(registered_qemu_handlers | tr '\n' ' ')
	[[ -z $h ]] || log "note: qemu binfmt handlers already registered on this host: $h(scripts/stack.sh binfmt-clear removes them)"
	log "up in $((SECONDS - t0)) s; eval \"\$(scripts/stack.sh env)\" to use it"
}

cmd_down() {
	need_root down
	take_lock
	local f name
	# Also without a pid file: what a killed buildkitd left (build
	# containers, mounts) goes too.
	for name in "${BUILDKITDS[@]}"; do
		if [[ -e $RUN_DIR/buildkitd-$name.pid ]]; then log "stopping buildkitd $name"; fi
		stop_buildkitd "$name"
	done
	if [[ -d $BK_STATE ]]; then release_mounts "$BK_STATE"; fi
	for f in "$RUN_DIR"/registry-*.pid; do
		[[ -e $f ]] || continue
		f=${f##*/registry-}
		log "stopping registry ${f%.pid}"
		stop_registry "${f%.pid}"
	done
	if [[ -e $RUN_DIR/dockerd.pid || -e $RUN_DIR/containerd.pid ]]; then
		log "stopping dockerd and containerd"
		stop_engine
	fi
	rm -f "$MODE_FILE" "$MA_STATE/port-base"
}

cmd_purge() {
	cmd_down
	log "removing $MA_STATE"
	rm -rf "$MA_STATE"
}

# ---------------------------------------------------------------- env, status --

cmd_env() {
	local mode='' host=''
	if [[ -s $MODE_FILE ]]; then read -r mode host <"$MODE_FILE"; fi
	case $mode in
	local) echo "export DOCKER_HOST=$(shquote "unix://$DOCKER_SOCK")" ;;
	external) if [[ -n $host ]]; then echo "export DOCKER_HOST=$(shquote "$host")"; else echo "unset DOCKER_HOST"; fi ;;
	*) die "the stack is not up (run 'scripts/stack.sh up')" ;;
	esac
	echo "export MA_STACK_STATE=$(shquote "$MA_STATE")"
	echo "export MA_STACK_CACHE=$(shquote "$MA_CACHE")"
	local name up
	for name in "${REGISTRIES[@]}"; do
		up=${name^^}
		echo "export MA_REGISTRY_$up=127.0.0.1:${REG_PORT[$name]}"
		if [[ -n ${REG_USER[$name]} ]]; then
			echo "export MA_REGISTRY_${up}_USER=$(shquote "${REG_USER[$name]}")"
			echo "export MA_REGISTRY_${up}_PASSWORD=$(shquote "${REG_PASS[$name]}")"
		fi
	done
	echo "export MA_BUSYBOX_IMAGE=$BUSYBOX_IMAGE"
	echo "export MA_DEBIAN_IMAGE=$DEBIAN_IMAGE"
	echo "export MA_BINFMT_IMAGE=$STANDIN_IMAGE"
	echo "export MA_BUILDKIT_AMD64=$(shquote "${BK_ADDR[amd64]}")"
	echo "export MA_BUILDKIT_ARM64=$(shquote "${BK_ADDR[arm64]}")"
	echo "export MA_BUILDKIT_TLS=$(shquote "$BK_TLS")"
}

cmd_status() {
	local bad=0 mode='' host='' pid
	if [[ -s $MODE_FILE ]]; then read -r mode host <"$MODE_FILE"; fi
	printf '%-16s %s\n' mode "${mode:-down}${host:+ ($host)}"
	if [[ $mode == local ]]; then
		local d exe
		for d in containerd dockerd; do
			exe=$PREFIX/usr/bin/$d
			[[ $d == dockerd ]] && exe=$PREFIX/usr/sbin/$d
			if pidfile_runs "$RUN_DIR/$d.pid" "$exe"; then
				printf '%-16s running pid %s\n' "$d" "$(read_pid "$RUN_DIR/$d.pid")"
			else
				printf '%-16s STOPPED\n' "$d"
				bad=1
			fi
		done
		printf '%-16s %s\n' socket "unix://$DOCKER_SOCK"
	fi
	local f name port user
	for f in "$RUN_DIR"/registry-*.pid; do
		[[ -e $f ]] || continue
		name=${f##*/registry-}
		name=${name%.pid}
		read -r port user <"$RUN_DIR/registry-$name.meta" 2>/dev/null || true
		pid=$(read_pid "$f")
		if pidfile_runs "$f" "$REGISTRY_BIN"; then
			printf '%-16s running pid %s on 127.0.0.1:%s%s\n' "registry-$name" "$pid" "$port" "${user:+ user $user}"
		else
			printf '%-16s STOPPED (127.0.0.1:%s)\n' "registry-$name" "$port"
			bad=1
		fi
	done
	for name in "${BUILDKITDS[@]}"; do
		f=$RUN_DIR/buildkitd-$name.pid
		if pidfile_runs "$f" "$BUILDKITD"; then
			printf '%-16s running pid %s on %s\n' "buildkitd-$name" "$(read_pid "$f")" "${BK_ADDR[$name]}"
		else
			printf '%-16s STOPPED (%s)\n' "buildkitd-$name" "${BK_ADDR[$name]}"
			bad=1
		fi
	done
	local h
	h=$(registered_qemu_handlers | tr '\n' ' ')
	printf '%-16s %s\n' binfmt "${h:-no qemu handlers}"
	[[ -n $mode ]] || bad=1
	return "$bad"
}

usage() {
	sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
}

main() {
	local cmd=${1:-}
	(($# > 0)) && shift
	case $cmd in
	install) take_lock; cmd_install ;;
	up) cmd_up ;;
	base-debian) cmd_base_debian ;;
	env) cmd_env ;;
	status) cmd_status ;;
	down) cmd_down ;;
	purge) cmd_purge ;;
	registry) cmd_registry "$@" ;;
	stop-registry) cmd_stop_registry "$@" ;;
	binfmt-clear) cmd_binfmt_clear ;;
	-h | --help | help) usage ;;
	*) usage; exit 2 ;;
	esac
}

main "$@"
