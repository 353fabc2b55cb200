#!/usr/bin/env bash
# scripts/stack.sh: provisions the real, local Docker stack that the
# multiarch-action tests and README examples run against.
#
#   scripts/stack.sh install       apt packages, Debian 13 engine debs, buildx plugin
#   scripts/stack.sh up            install if needed, engine, five registries, base images
#   scripts/stack.sh base-debian   also build 127.0.0.1:5000/base/debian:bookworm (slow)
#   scripts/stack.sh env           "export ..." lines for eval (DOCKER_HOST, registries)
#   scripts/stack.sh status        what runs; exit 1 if something `up` started is down
#   scripts/stack.sh down          stop everything `up` started (caches are kept)
#   scripts/stack.sh registry NAME PORT [USER PASSWORD_ENV_VAR]   one more registry
#   scripts/stack.sh stop-registry NAME
#   scripts/stack.sh binfmt-clear  unregister the host's qemu-* binfmt handlers
#   scripts/stack.sh purge         down, then delete the state dir (engine data, registries)
#
# Environment:
#   MA_CACHE=/var/cache/multiarch-action  downloads, private apt state, engine prefix,
#                                         rootfs tarballs; kept by `down`
#   MA_STATE=/var/tmp/multiarch-stack     sockets, pid files, logs, configs, engine
#                                         data, registry storage
#   MA_LOCAL_ENGINE=1                     run the private engine even when the machine
#                                         already has a working docker engine + buildx
#   MA_MIRROR=http://deb.debian.org/debian  Debian mirror for the private apt state
#                                         and mmdebstrap
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

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STANDIN_SRC=$SCRIPT_DIR/stack/binfmt-standin

# Cache layout.
APT_DIR=$MA_CACHE/apt               # private apt state (trixie lists, own status file)
DEB_DIR=$MA_CACHE/debs              # downloaded .deb files
PREFIX=$MA_CACHE/prefix             # dpkg-deb -x of docker.io, containerd, docker-buildx
BASE_DIR=$MA_CACHE/base             # rootfs tarballs for the base images
BUILDX_BIN=$PREFIX/usr/libexec/docker/cli-plugins/docker-buildx

# State layout.
RUN_DIR=$MA_STATE/run               # sockets and pid files
LOG_DIR=$MA_STATE/log
REG_DIR=$MA_STATE/registry          # registry-NAME config, htpasswd, storage
ENGINE_DIR=$MA_STATE/engine         # containerd root and docker data-root
DOCKER_CFG=$MA_STATE/docker-config  # DOCKER_CONFIG for this script's own docker calls
CONTAINERD_SOCK=$RUN_DIR/containerd.sock
DOCKER_SOCK=$RUN_DIR/docker.sock
MODE_FILE=$MA_STATE/engine-mode     # "local" or "external <DOCKER_HOST or empty>"

# Packages from Debian 12 itself. runc is Debian 12's: the Debian 13 runc
# needs glibc 2.38, while dockerd, containerd and its shim run on glibc 2.36.
# arch-test lets mmdebstrap check that a foreign architecture can execute.
APT_PACKAGES=(qemu-user-static binfmt-support docker-registry apache2-utils mmdebstrap
	arch-test runc curl jq ca-certificates iptables xz-utils)

# Debian 13 (trixie) packages extracted into $PREFIX, and the versions the
# project was written against (a different upstream series only warns).
ENGINE_DEBS=(docker.io containerd docker-buildx)
declare -A ENGINE_SERIES=([docker.io]=26. [containerd]=1.7. [docker-buildx]=0.13.)
BUSYBOX_ARCHES=(amd64 arm64 armhf)

# The fixed registries: name port user password. Base holds base images and
# keeps its storage; the others start empty on every `up`.
REGISTRIES=(base hub m1 m2 m3)
declare -A REG_PORT=([base]=5000 [hub]=5001 [m1]=5002 [m2]=5003 [m3]=5004)
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

# Single-quotes a value for `eval` by a POSIX shell.
shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

read_pid() { [[ -s $1 ]] && cat "$1" || true; }

# Starts a daemon in its own session so that it outlives this script and no
# terminal hang-up reaches it; its output goes to a log file and it inherits
# none of our file descriptors (a held lock fd or a caller's pipe would
# otherwise stay open as long as the daemon lives). Prints its pid.
spawn() {
	local logfile=$1
	shift
	(
		for fd in /proc/$BASHPID/fd/*; do
			fd=${fd##*/}
			[[ $fd -gt 2 ]] && eval "exec $fd>&-"
		done
		exec setsid "$@" </dev/null >>"$logfile" 2>&1
	) &
	echo $!
}

# Stops the process in a pid file, but only if it still is the program we
# started (pids get reused). TERM first; KILL after $3 seconds.
stop_pidfile() {
	local pidfile=$1 exe=$2 wait_s=${3:-15} pid running
	pid=$(read_pid "$pidfile")
	# A binary replaced on disk shows as "PATH (deleted)".
	running=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
	running=${running% (deleted)}
	if pid_alive "$pid" && [[ $running == "$(readlink -f "$exe")" ]]; then
		kill -TERM "$pid" 2>/dev/null || true
		local i
		for ((i = 0; i < wait_s * 10; i++)); do
			pid_alive "$pid" || break
			sleep 0.1
		done
		if pid_alive "$pid"; then
			log "$(basename "$exe") ($pid) ignored TERM, killing it"
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
	[[ -n $had_policy ]] || printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod +x "$policy"
	local rc=0
	# An unrelated unreachable source makes `update` complain; the install
	# may still succeed, so only the install decides.
	apt-get update -qq || log "warning: apt-get update reported errors"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null || rc=$?
	[[ -n $had_policy ]] || rm -f "$policy"
	((rc == 0)) || die "apt-get install failed ($rc)"
	# The Debian docker-registry package may have started its own instance on
	# :5000 anyway (systemd machines ignore policy-rc.d); stop it so that port
	# is free for the base registry.
	if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
		log "stopping the docker-registry system service (it takes port 5000)"
		systemctl disable --now docker-registry >/dev/null 2>&1 || true
	fi
}

# Debian 13's InRelease is signed with the trixie keys, which Debian 12's
# debian-archive-keyring has carried since 2023.3+deb12u1. An older keyring is
# upgraded from Debian 12 itself (no other source is added).
ensure_trixie_keyring() {
	[[ -e /usr/share/keyrings/debian-archive-trixie-automatic.gpg ]] && return
	log "debian-archive-keyring lacks the Debian 13 keys; upgrading it"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --only-upgrade debian-archive-keyring >/dev/null
	[[ -e /usr/share/keyrings/debian-archive-trixie-automatic.gpg ]] ||
		die "this debian-archive-keyring has no Debian 13 key; install a newer one (bookworm-backports)"
}

# apt-get/apt-cache with a state of their own: own sources.list, lists,
# cache, status file and preferences. Nothing of the system's apt setup
# except apt.conf (proxies and the like) takes part.
APT_ARCHES=()
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

# Extracts the engine debs into $PREFIX; redone when the set of debs changes.
ensure_prefix() {
	local debs=() pkg native
	native=$(dpkg --print-architecture)
	for pkg in "${ENGINE_DEBS[@]}"; do
		debs+=("$(deb_path "$pkg" "$native")")
		local ver
		ver=$(dpkg-deb -f "${debs[-1]}" Version)
		[[ ${ver#*:} == "${ENGINE_SERIES[$pkg]}"* ]] ||
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
	local arch
	for arch in "${BUSYBOX_ARCHES[@]}"; do
		[[ -n $(deb_path busybox-static "$arch") ]] || return 1
	done
	if [[ $ENGINE_MODE == local ]]; then
		[[ -x $PREFIX/usr/sbin/dockerd && -x $PREFIX/usr/bin/containerd && -x $BUILDX_BIN ]] || return 1
		[[ -L $DOCKER_CFG/cli-plugins/docker-buildx ]] || return 1
		docker buildx version >/dev/null 2>&1 || return 1
	fi
}

cmd_install() {
	need_root install
	command -v docker >/dev/null || die "the docker CLI is not on PATH"
	decide_engine_mode
	install_apt_packages
	fetch_debs
	if [[ $ENGINE_MODE == local ]]; then
		ensure_prefix
		ensure_buildx_plugin
	fi
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
	pid=$(read_pid "$RUN_DIR/containerd.pid")
	if pid_alive "$pid" && [[ -S $CONTAINERD_SOCK ]]; then
		return
	fi
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
	pid=$(read_pid "$RUN_DIR/dockerd.pid")
	if pid_alive "$pid" && engine_answers; then
		return
	fi
	mkdir -p "$ENGINE_DIR/docker" "$RUN_DIR/docker-exec" "$LOG_DIR"
	# containerd-snapshotter: images live in containerd's store, which is what
	# lets the docker driver of buildx build and push multi-platform images.
	# 127.0.0.0/8 is plain-http by default already; the list makes it explicit.
	local regs
	regs=$(printf '"127.0.0.1:%s",' {5000..5009})
	cat >"$MA_STATE/daemon.json" <<EOF
{
  "features": { "containerd-snapshotter": true },
  "insecure-registries": [${regs%,}]
}
EOF
	rm -f "$DOCKER_SOCK"
	# No bridge and no iptables: the stack must not touch the host's network
	# set-up (containers get --network host or none). The cgroup parent keeps
	# its containers apart from another engine's. The pid file is dockerd's own.
	log "starting dockerd ($DOCKER_SOCK)"
	spawn "$LOG_DIR/dockerd.log" env PATH="$ENGINE_PATH" \
		"$PREFIX/usr/sbin/dockerd" \
		--config-file "$MA_STATE/daemon.json" \
		--host "unix://$DOCKER_SOCK" \
		--containerd "$CONTAINERD_SOCK" \
		--data-root "$ENGINE_DIR/docker" \
		--exec-root "$RUN_DIR/docker-exec" \
		--pidfile "$RUN_DIR/dockerd.pid" \
		--cgroup-parent multiarch-stack \
		--bridge=none --iptables=false --ip6tables=false --ip-forward=false \
		--userland-proxy-path "$PREFIX/usr/sbin/docker-proxy" >/dev/null
	local i
	for ((i = 0; i < 600; i++)); do
		[[ -S $DOCKER_SOCK ]] && engine_answers && return
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
	start_containerd
	start_dockerd
}

stop_engine() {
	stop_pidfile "$RUN_DIR/dockerd.pid" "$PREFIX/usr/sbin/dockerd" 30
	stop_pidfile "$RUN_DIR/containerd.pid" "$PREFIX/usr/bin/containerd" 15
	rm -f "$DOCKER_SOCK" "$CONTAINERD_SOCK" "$CONTAINERD_SOCK.ttrpc"
}

# -------------------------------------------------------------- registries --

valid_registry_name() { [[ $1 =~ ^[a-z0-9][a-z0-9_-]*$ ]]; }

registry_http_code() { # port [user pass]
	local args=(-s -o /dev/null -w '%{http_code}' --max-time 5)
	(($# == 3)) && args+=(-u "$2:$3")
	curl "${args[@]}" "http://127.0.0.1:$1/v2/" 2>/dev/null || true
}

stop_registry() {
	stop_pidfile "$RUN_DIR/registry-$1.pid" /usr/bin/docker-registry 10
	rm -f "$RUN_DIR/registry-$1.meta"
}

# start_registry NAME PORT USER PASSWORD KEEP_STORAGE
# A Distribution registry on 127.0.0.1:PORT with deletes enabled and, when
# USER is given, htpasswd (bcrypt) auth. Storage is wiped unless KEEP_STORAGE=1.
start_registry() {
	local name=$1 port=$2 user=$3 pass=$4 keep=$5
	valid_registry_name "$name" || die "bad registry name '$name'"
	[[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "bad port '$port'"
	local dir=$REG_DIR/$name
	local pid
	pid=$(read_pid "$RUN_DIR/registry-$name.pid")
	local meta="$port $user"
	if [[ $keep == 1 ]] && pid_alive "$pid" && [[ $(cat "$RUN_DIR/registry-$name.meta" 2>/dev/null) == "$meta" ]]; then
		return # a keeper that already runs as asked: nothing to do
	fi
	stop_registry "$name"
	port_busy "$port" && die "port 127.0.0.1:$port is taken by another program"
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
	pid=$(spawn "$LOG_DIR/registry-$name.log" /usr/bin/docker-registry serve "$dir/config.yml")
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
	dk buildx imagetools create -t "$ref" "${parts[@]}" >/dev/null 2>&1 ||
		dk buildx imagetools create -t "$ref" "${parts[@]}"
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
	local ctx
	ctx=$(mktemp -d)
	mkdir -p "$ctx/qemu"
	cp "$STANDIN_SRC/Dockerfile" "$STANDIN_SRC/binfmt.sh" "$ctx/"
	chmod 0755 "$ctx/binfmt.sh"
	local name arch def magic mask
	# Emulators the stand-in offers (as tonistiigi/binfmt names them); Debian
	# has no binfmt definition for the host's own architectures, which are
	# left out automatically.
	for name in aarch64:arm64 arm:arm riscv64:riscv64 ppc64le:ppc64le s390x:s390x \
		i386:386 mips64el:mips64le mips64:mips64 loongarch64:loong64 x86_64:amd64; do
		arch=${name#*:}
		name=${name%%:*}
		def=/usr/share/binfmts/qemu-$name
		[[ -f $def && -x /usr/bin/qemu-$name-static ]] || continue
		magic=$(awk '$1 == "magic" { print $2 }' "$def")
		mask=$(awk '$1 == "mask" { print $2 }' "$def")
		[[ -n $magic && -n $mask ]] || continue
		echo "qemu-$name $arch $magic $mask" >>"$ctx/emulators.table"
		cp "/usr/bin/qemu-$name-static" "$ctx/qemu/qemu-$name"
	done
	local hash
	hash=$(cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
	local hashref=${STANDIN_IMAGE%:*}:ctx-$hash
	if image_in_registry "$STANDIN_IMAGE" && image_in_registry "$hashref"; then
		rm -rf "$ctx"
		return
	fi
	log "building $STANDIN_IMAGE (stand-in for tonistiigi/binfmt)"
	# Only COPY steps, so nothing runs under emulation; single platform, no
	# provenance attestation (the real image has none either).
	dk buildx build --quiet --platform linux/amd64 --provenance=false --load \
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
	local arch=$1 out=$BASE_DIR/debian-bookworm-$arch.tar
	if [[ -s $out ]]; then
		echo "$out"
		return
	fi
	mkdir -p "$BASE_DIR"
	log "mmdebstrap --variant=minbase --arch=$arch bookworm (about 1.5 min)"
	local t0=$SECONDS
	# /dev entries are dropped: docker provides /dev at run time.
	mmdebstrap --quiet --variant=minbase --arch="$arch" --format=tar bookworm - "$MA_MIRROR" |
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
	if pid_alive "$(read_pid "$RUN_DIR/dockerd.pid")"; then
		set_engine_mode local
	else
		decide_engine_mode
	fi
	install_done || cmd_install
	mkdir -p "$RUN_DIR" "$LOG_DIR"
	mount_binfmt
	if [[ $ENGINE_MODE == local ]]; then
		start_engine
		echo local >"$MODE_FILE"
	else
		echo "external ${DOCKER_HOST:-}" >"$MODE_FILE"
	fi
	start_fixed_registries
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
	local f
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
	rm -f "$MODE_FILE"
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
}

cmd_status() {
	local bad=0 mode='' host='' pid
	if [[ -s $MODE_FILE ]]; then read -r mode host <"$MODE_FILE"; fi
	printf '%-12s %s\n' mode "${mode:-down}${host:+ ($host)}"
	if [[ $mode == local ]]; then
		for pid in containerd dockerd; do
			local p
			p=$(read_pid "$RUN_DIR/$pid.pid")
			if pid_alive "$p"; then
				printf '%-12s running pid %s\n' "$pid" "$p"
			else
				printf '%-12s STOPPED\n' "$pid"
				bad=1
			fi
		done
		printf '%-12s %s\n' socket "unix://$DOCKER_SOCK"
	fi
	local f name port user
	for f in "$RUN_DIR"/registry-*.pid; do
		[[ -e $f ]] || continue
		name=${f##*/registry-}
		name=${name%.pid}
		read -r port user <"$RUN_DIR/registry-$name.meta" 2>/dev/null || true
		pid=$(read_pid "$f")
		if pid_alive "$pid"; then
			printf '%-12s running pid %s on 127.0.0.1:%s%s\n' "registry-$name" "$pid" "$port" "${user:+ user $user}"
		else
			printf '%-12s STOPPED (127.0.0.1:%s)\n' "registry-$name" "$port"
			bad=1
		fi
	done
	local h
	h=$(registered_qemu_handlers | tr '\n' ' ')
	printf '%-12s %s\n' binfmt "${h:-no qemu handlers}"
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
