#!/usr/bin/env bash
# Build `buildkitd` and `buildctl` from the BuildKit source that Debian ships
# inside golang-github-docker-docker-dev (source package docker.io, suite sid).
#
# Nothing is installed into the system: every .deb is fetched with a private
# apt state and unpacked with `dpkg-deb -x` into a private prefix, and the Go
# toolchain from that prefix builds in GOPATH mode (GO111MODULE=off), the same
# way Debian builds its Go -dev packages.
#
# Where the Go imports come from, in this order:
#   1. Debian Go -dev packages (found through the suite's Contents-all index)
#   2. the vendor/ tree that Debian keeps in the docker.io source tarball for
#      the few libraries it has not packaged separately
#   3. stand-ins written by this script (stubs/, first in GOPATH) for two
#      optional OCI-worker snapshotters that can't be had from Debian:
#      - fuse-overlayfs: not packaged at all;
#      - stargz: Debian's golang-github-containerd-stargz-snapshotter-dev
#        (0.14.x) is built on the containerd 1.x API, BuildKit 0.2x needs
#        the 2.x one (0.16+).
#      The resulting buildkitd reports both as unavailable; its default
#      snapshotters (overlayfs, native) are the real ones.
#
# Layout (all under $BK_ROOT, default $MA_CACHE/buildkit, where MA_CACHE
# defaults to /var/cache/multiarch-action as in scripts/stack.sh):
#   apt/        private apt state (indexes incl. Contents-all and Sources)
#   debs/       downloaded .deb files
#   prefix/     the .debs unpacked (Go toolchain + /usr/share/gocode)
#   docker-src/ the docker.io source tarball and the part of it that is used
#   stubs/      first GOPATH entry: the stand-ins (see above)
#   extra/      last GOPATH entry: the copies from the docker.io vendor/
#   bin/        the result: buildkitd, buildctl (+ .build-stamp)
#   packages.txt  the Debian packages that were used
#
# Idempotent: when bin/ holds both binaries and the stamp of a finished build,
# the script only prints their versions and exits.
#
# Environment knobs:
#   BK_ROOT      where everything goes (see above)
#   BK_SUITE     Debian suite to take packages from (default sid)
#   BK_MIRROR    Debian mirror (default $MA_MIRROR, else http://deb.debian.org/debian)
#   BK_FORCE=1   rebuild even if the binaries exist
#   BK_REFRESH=1 re-run `apt-get update` on the private apt state
#   BK_TAGS      extra Go build tags (space or comma separated)
#
# At run time buildkitd's OCI worker needs root and `runc` (Debian 12's
# `runc` package works).
set -euo pipefail

BK_ROOT=${BK_ROOT:-${MA_CACHE:-/var/cache/multiarch-action}/buildkit}
BK_SUITE=${BK_SUITE:-sid}
BK_MIRROR=${BK_MIRROR:-${MA_MIRROR:-http://deb.debian.org/debian}}
BK_TAGS=${BK_TAGS:-}

APTDIR=$BK_ROOT/apt
DEBS=$BK_ROOT/debs
PREFIX=$BK_ROOT/prefix
DSRC=$BK_ROOT/docker-src
EXTRA=$BK_ROOT/extra
STUBS=$BK_ROOT/stubs
BIN=$BK_ROOT/bin
GOCODE=$PREFIX/usr/share/gocode
BK_SRC=$GOCODE/src/github.com/moby/buildkit
PKGLIST=$BK_ROOT/packages.txt
STAMP=$BIN/.build-stamp

# The binary package that carries the BuildKit source.
SOURCE_PKG=golang-github-docker-docker-dev

# Import paths of the optional snapshotters that may get stand-ins (see top).
FUSE_OVL=github.com/containerd/fuse-overlayfs-snapshotter/v2
STARGZ=github.com/containerd/stargz-snapshotter
STARGZ_PKG=golang-github-containerd-stargz-snapshotter-dev
STARGZ_MIN=0.16

# ---------------------------------------------------------------- helpers ---

log() { printf '[buildkitd-build] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Timing: `step NAME` starts a part, `step_done` prints how long it took.
STEP_NAME=
STEP_T0=
T_START=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
step() { STEP_NAME=$1; STEP_T0=$(date +%s.%N); log "--- $STEP_NAME"; }
step_done() { log "--- $STEP_NAME: $(elapsed "$STEP_T0") s"; }

print_versions() {
  "$BIN/buildkitd" --version
  "$BIN/buildctl" --version
}

# ----------------------------------------------------------- fast path ---

if [[ -z ${BK_FORCE:-} && -x $BIN/buildkitd && -x $BIN/buildctl && -f $STAMP ]]; then
  print_versions
  exit 0
fi

[[ $(id -u) == 0 ]] || die "run as root"
for tool in apt-get apt-cache dpkg-deb tar xz awk sed; do
  command -v "$tool" >/dev/null || die "missing tool: $tool"
done

mkdir -p "$APTDIR"/etc/sources.list.d "$APTDIR"/etc/preferences.d \
  "$APTDIR"/state/lists/partial "$APTDIR"/cache/archives/partial \
  "$DEBS" "$PREFIX" "$DSRC" "$EXTRA/src" "$STUBS/src" "$BIN"

# ----------------------------------------------------- private apt state ---

# An empty dpkg status file: apt then believes nothing is installed. The
# system's own sources, preferences and status are never read or changed.
[[ -f $APTDIR/state/status ]] || : > "$APTDIR/state/status"
{
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $BK_MIRROR $BK_SUITE main"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $BK_MIRROR $BK_SUITE main"
} > "$APTDIR/etc/sources.list"
# Also fetch the Contents index (which package ships which file); the
# resolver uses it to map a missing Go import path to a package.
cat > "$APTDIR/etc/apt.conf" <<'EOF'
Acquire::IndexTargets::deb::Contents-deb {
  MetaKey "$(COMPONENT)/Contents-$(ARCHITECTURE)";
  ShortDescription "Contents-$(ARCHITECTURE)";
  Description "$(RELEASE)/$(COMPONENT) $(ARCHITECTURE) Contents";
  KeepCompressed "true";
};
EOF

APT_OPTS=(
  -o "Dir::State=$APTDIR/state"
  -o "Dir::State::status=$APTDIR/state/status"
  -o "Dir::Cache=$APTDIR/cache"
  -o "Dir::Etc::SourceList=$APTDIR/etc/sources.list"
  -o "Dir::Etc::SourceParts=$APTDIR/etc/sources.list.d"
  -o "Dir::Etc::Preferences=$APTDIR/etc/preferences"
  -o "Dir::Etc::PreferencesParts=$APTDIR/etc/preferences.d"
  # Go -dev packages are "Architecture: all"; their files are in Contents-all
  -o "APT::Architectures::=all"
  # files land in root-owned dirs; don't hand the download to user _apt
  -o "APT::Sandbox::User=root"
  # private state: no need to take the system's dpkg/apt locks
  -o "Debug::NoLocking=1"
)
xapt_get() { APT_CONFIG=$APTDIR/etc/apt.conf apt-get "${APT_OPTS[@]}" "$@"; }
xapt_cache() { APT_CONFIG=$APTDIR/etc/apt.conf apt-cache "${APT_OPTS[@]}" "$@"; }
contents_all() { compgen -G "$APTDIR/state/lists/*_${BK_SUITE}_main_Contents-all*" | head -n1 || true; }

step "apt indexes ($BK_SUITE)"
if [[ -n ${BK_REFRESH:-} || -z $(contents_all) ]] \
  || ! compgen -G "$APTDIR/state/lists/*_${BK_SUITE}_main_source_Sources*" >/dev/null; then
  xapt_get -q update >&2
else
  log "using the indexes from an earlier run (BK_REFRESH=1 to update)"
fi
[[ -n $(contents_all) ]] || die "apt did not fetch Contents-all"
step_done

# ------------------------------------------------- download and unpack ---

# deb_file PKG -> path of the downloaded .deb of PKG (empty if none)
deb_file() { compgen -G "$DEBS/${1}_*.deb" | head -n1 || true; }
# is_unpacked FILE -> true if that .deb was unpacked into $PREFIX already
is_unpacked() { grep -qxF "$(basename "$1")" "$PREFIX/.unpacked" 2>/dev/null; }

# fetch_and_unpack PKG... : download the .debs not there yet (a single
# apt-get call) and unpack every one not unpacked yet into $PREFIX.
fetch_and_unpack() {
  local want=() p f
  for p in "$@"; do
    [[ -n $(deb_file "$p") ]] || want+=("$p")
  done
  if ((${#want[@]})); then
    log "downloading ${#want[@]} package(s): ${want[*]}"
    (cd "$DEBS" && xapt_get -q download "${want[@]}" >&2)
  fi
  touch "$PREFIX/.unpacked"
  for p in "$@"; do
    f=$(deb_file "$p")
    [[ -n $f ]] || die "download of $p failed"
    if ! is_unpacked "$f"; then
      dpkg-deb -x "$f" "$PREFIX"
      basename "$f" >> "$PREFIX/.unpacked"
    fi
  done
}

step "Go toolchain + BuildKit source"
# golang-go (the suite's default Go) depends on golang-1.NN-go; use that.
GO_PKG=$(xapt_cache show --no-all-versions golang-go \
  | sed -n 's/^Depends:.*\(golang-1\.[0-9][0-9]*\)-go.*/\1/p' | head -n1)
[[ -n $GO_PKG ]] || die "cannot tell which golang-1.NN-go golang-go uses"
fetch_and_unpack "$GO_PKG-go" "$GO_PKG-src" "$SOURCE_PKG"
GOROOT_DIR=$PREFIX/usr/lib/go-${GO_PKG#golang-}
[[ -x $GOROOT_DIR/bin/go ]] || die "no go binary at $GOROOT_DIR/bin/go"
[[ -f $BK_SRC/cmd/buildkitd/main.go ]] || die "$SOURCE_PKG has no BuildKit source"
step_done

# The Go environment: GOPATH mode with three entries (stubs/, Debian's
# gocode, extra/; the first one holding a package wins), static binaries (cgo
# off), the toolchain from the prefix, no network access and no switching to
# another toolchain.
export GOROOT=$GOROOT_DIR
export PATH=$GOROOT/bin:$PATH
export GOPATH=$STUBS:$GOCODE:$EXTRA
export GO111MODULE=off
export GOTOOLCHAIN=local
export GOPROXY=off
export GOFLAGS=
export CGO_ENABLED=0
export GOCACHE=$BK_ROOT/gocache
TAGS=$(echo "$BK_TAGS" | tr ',' ' ' | xargs)

# GOPATH-mode Go reads an import "x/y/vN/z" as "x/y/z" when x/y/go.mod says
# "module x/y/vN" ("minimal module compatibility"), which is how Debian lays
# out major versions. It only does so for importing code that sits below some
# go.mod, and the BuildKit tree has none, so put a placeholder go.mod at the
# top of each GOPATH entry. (GO111MODULE=off ignores go.mod otherwise.)
for d in "$STUBS/src" "$GOCODE/src" "$EXTRA/src"; do
  [[ -f $d/go.mod ]] || printf '// placeholder, see scripts/buildkitd-build.sh\nmodule gopath.invalid\n' > "$d/go.mod"
done
log "$(go version); GOPATH=$GOPATH; tags='$TAGS'"

# ------------------------------------------- docker.io source (vendor/) ---

# The docker.io .deb's "Source:" field, "name" or "name (version)".
DEV_DEB=$(deb_file "$SOURCE_PKG")
DEB_VER=$(dpkg-deb -f "$DEV_DEB" Version)
SRC_FIELD=$(dpkg-deb -f "$DEV_DEB" Source)
SRC_NAME=${SRC_FIELD%% *}
SRC_VER=$DEB_VER
if [[ $SRC_FIELD == *"("*")"* ]]; then
  SRC_VER=${SRC_FIELD#*(}
  SRC_VER=${SRC_VER%)*}
fi
VENDOR=$DSRC/vendor

# get_vendor: download the main docker.io tarball (checked against the
# Sources index) and keep its engine/vendor tree in $VENDOR. Only the .orig
# tarball is fetched: it alone carries vendor/.
get_vendor() {
  [[ -f $VENDOR/modules.txt ]] && return 0
  local line uri name sum
  line=$(xapt_get -q source --print-uris "$SRC_NAME=$SRC_VER" 2>/dev/null \
    | grep -E "^'[^']*/${SRC_NAME}_[^' ]*\.orig\.tar\.[a-z0-9]+' " | head -n1) \
    || die "no .orig tarball for $SRC_NAME $SRC_VER in the Sources index"
  read -r uri name _ sum <<<"$line"
  uri=${uri//\'/}
  if [[ ! -f $DSRC/$name ]]; then
    log "downloading $name"
    /usr/lib/apt/apt-helper -o APT::Sandbox::User=root \
      download-file "$uri" "$DSRC/$name.part" "$sum" >&2
    mv "$DSRC/$name.part" "$DSRC/$name"
  fi
  rm -rf "$DSRC/unpack"
  mkdir -p "$DSRC/unpack"
  # the tarball has one top dir (moby-moby-<rev>/); vendor/ is in engine/
  tar -xf "$DSRC/$name" -C "$DSRC/unpack" --wildcards '*/engine/vendor/*'
  local v
  v=$(find "$DSRC/unpack" -maxdepth 4 -type d -path '*/engine/vendor' | head -n1)
  [[ -n $v && -f $v/modules.txt ]] || die "no engine/vendor/modules.txt in $name"
  rm -rf "$VENDOR"
  mv "$v" "$VENDOR"
  rm -rf "$DSRC/unpack"
}

# The BuildKit release docker.io pins (for the version string).
bk_release() {
  get_vendor
  sed -n 's|^# github.com/moby/buildkit \(v[^ ]*\).*|\1|p' "$VENDOR/modules.txt" | head -n1
}

# ------------------------------------------------ resolve missing imports ---

# missing_imports: the Go import paths that buildkitd/buildctl need but that
# are in neither GOROOT nor GOPATH (one a line).
missing_imports() {
  (
    cd "$BK_SRC"
    # go list exits non-zero when something is missing; that is expected here
    go list -e -deps -tags "$TAGS" \
      -f '{{with .Error}}{{.Err}}{{"\n"}}{{end}}{{range .DepsErrors}}{{.Err}}{{"\n"}}{{end}}' \
      ./cmd/buildkitd ./cmd/buildctl 2>&1 || true
  ) | sed -n 's/.*cannot find package "\([^"]*\)".*/\1/p' | sort -u
}

# The Contents-all index cut down to "dir-below-gocode/src<TAB>package", for
# every directory holding .go files plus every other entry (Debian ships
# "/vN" symlinks for Go major versions).
GOCODE_INDEX=$APTDIR/gocode-index.tsv
build_gocode_index() {
  local c
  c=$(contents_all)
  if [[ ! -s $GOCODE_INDEX || $c -nt $GOCODE_INDEX ]]; then
    /usr/lib/apt/apt-helper cat-file "$c" | awk '
      index($1, "usr/share/gocode/src/") == 1 {
        d = substr($1, 22)
        if (d ~ /\.go$/) sub(/\/[^\/]*$/, "", d)
        n = split($NF, a, ",")
        for (i = 1; i <= n; i++) { p = a[i]; sub(/.*\//, "", p); print d "\t" p }
      }' | sort -u > "$GOCODE_INDEX.tmp"
    mv "$GOCODE_INDEX.tmp" "$GOCODE_INDEX"
  fi
  declare -gA IDX=()
  local d p
  while IFS=$'\t' read -r d p; do
    [[ -n ${IDX[$d]:-} ]] || IDX[$d]=$p
  done < "$GOCODE_INDEX"
}

# lookup IMPORT -> package name, or nothing. In GOPATH mode Go finds
# ".../vN/..." under the path without "/vN" when the go.mod there says so
# ("minimal module compatibility"), so try that spelling too.
lookup() {
  local p=$1 alt
  alt=$(sed -E 's#/v[0-9]+(/|$)#\1#' <<<"$p")
  if [[ -n ${IDX[$p]:-} ]]; then echo "${IDX[$p]}"
  elif [[ -n ${IDX[$alt]:-} ]]; then echo "${IDX[$alt]}"
  fi
}

# ------------------------------------------------------------- stubs ---

# stub_file IMPORT FILE: write Go source from stdin to stubs/src/IMPORT/FILE
stub_file() { mkdir -p "$STUBS/src/$1"; cat > "$STUBS/src/$1/$2"; }

# fuse-overlayfs snapshotter: never supported in this build, so buildkitd's
# "auto" snapshotter choice skips it.
write_fuse_stub() {
  stub_file "$FUSE_OVL" stub.go <<'EOF'
// Stand-in written by scripts/buildkitd-build.sh: Debian has no package of
// the fuse-overlayfs snapshotter, so this buildkitd reports it unavailable.
package fuseoverlayfs

import (
	"errors"

	"github.com/containerd/containerd/v2/core/snapshots"
)

var errNotBuilt = errors.New("fuse-overlayfs snapshotter is not part of this buildkitd build")

// Supported always fails.
func Supported(root string) error { return errNotBuilt }

// NewSnapshotter always fails.
func NewSnapshotter(root string, opts ...interface{}) (snapshots.Snapshotter, error) {
	return nil, errNotBuilt
}
EOF
}

# stargz snapshotter: only the names cmd/buildkitd uses; creating the
# filesystem fails, so `--oci-worker-snapshotter stargz` errors out.
write_stargz_stub() {
  stub_file "$STARGZ/fs/config" stub.go <<'EOF'
// Stand-in written by scripts/buildkitd-build.sh (stargz not built in).
package config

// Config takes no settings in this build.
type Config struct{}
EOF
  stub_file "$STARGZ/fs/layer" stub.go <<'EOF'
// Stand-in written by scripts/buildkitd-build.sh (stargz not built in).
package layer

// OverlayOpaqueType selects how overlay opaque dirs are marked.
type OverlayOpaqueType int

const (
	OverlayOpaqueAll OverlayOpaqueType = iota
	OverlayOpaqueTrusted
	OverlayOpaqueUser
)
EOF
  stub_file "$STARGZ/fs/source" stub.go <<'EOF'
// Stand-in written by scripts/buildkitd-build.sh (stargz not built in).
package source

import (
	"errors"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/reference"
)

// Source describes where a lazily pulled layer comes from.
type Source struct{}

// GetSources maps snapshot labels to sources.
type GetSources func(labels map[string]string) ([]Source, error)

// RegistryHosts lists the registry hosts for a reference.
type RegistryHosts func(reference.Spec) ([]docker.RegistryHost, error)

// FromDefaultLabels returns a GetSources that always fails.
func FromDefaultLabels(hosts RegistryHosts) GetSources {
	return func(map[string]string) ([]Source, error) {
		return nil, errors.New("stargz snapshotter is not part of this buildkitd build")
	}
}
EOF
  stub_file "$STARGZ/snapshot" stub.go <<'EOF'
// Stand-in written by scripts/buildkitd-build.sh (stargz not built in).
package snapshot

import (
	"context"
	"errors"

	"github.com/containerd/containerd/v2/core/snapshots"
)

// FileSystem is the remote filesystem the snapshotter would mount.
type FileSystem interface{}

// SnapshotterConfig holds options (none apply here).
type SnapshotterConfig struct{}

// Opt changes a SnapshotterConfig.
type Opt func(*SnapshotterConfig) error

// AsynchronousRemove is accepted and ignored.
func AsynchronousRemove(*SnapshotterConfig) error { return nil }

// NoRestore is accepted and ignored.
func NoRestore(*SnapshotterConfig) error { return nil }

// NewSnapshotter always fails.
func NewSnapshotter(ctx context.Context, root string, fs FileSystem, opts ...Opt) (snapshots.Snapshotter, error) {
	return nil, errors.New("stargz snapshotter is not part of this buildkitd build")
}
EOF
  stub_file "$STARGZ/fs" stub.go <<'EOF'
// Stand-in written by scripts/buildkitd-build.sh (stargz not built in).
package fs

import (
	"errors"

	"github.com/containerd/stargz-snapshotter/fs/config"
	"github.com/containerd/stargz-snapshotter/fs/layer"
	"github.com/containerd/stargz-snapshotter/fs/source"
	"github.com/containerd/stargz-snapshotter/snapshot"
	"github.com/sirupsen/logrus"
)

// Option is accepted and ignored.
type Option func(*options)

type options struct{}

// WithGetSources is accepted and ignored.
func WithGetSources(source.GetSources) Option { return func(*options) {} }

// WithMetricsLogLevel is accepted and ignored.
func WithMetricsLogLevel(logrus.Level) Option { return func(*options) {} }

// WithOverlayOpaqueType is accepted and ignored.
func WithOverlayOpaqueType(layer.OverlayOpaqueType) Option { return func(*options) {} }

// NewFilesystem always fails.
func NewFilesystem(root string, cfg config.Config, opts ...Option) (snapshot.FileSystem, error) {
	return nil, errors.New("stargz snapshotter is not part of this buildkitd build")
}
EOF
}

step "stand-ins"
build_gocode_index
rm -rf "$STUBS/src/github.com"
if [[ -z $(lookup "$FUSE_OVL") ]]; then
  write_fuse_stub
  log "fuse-overlayfs snapshotter: stand-in (no Debian package)"
fi
sgz_ver=$(xapt_cache show --no-all-versions "$STARGZ_PKG" 2>/dev/null | sed -n 's/^Version: //p' | head -n1 || true)
if [[ -z $sgz_ver ]] || dpkg --compare-versions "$sgz_ver" lt "$STARGZ_MIN"; then
  write_stargz_stub
  log "stargz snapshotter: stand-in ($STARGZ_PKG ${sgz_ver:-missing} < $STARGZ_MIN)"
fi
step_done

step "resolve imports"
round=0
while :; do
  round=$((round + 1))
  ((round <= 60)) || die "resolver does not converge"
  mapfile -t missing < <(missing_imports)
  ((${#missing[@]})) || break
  log "round $round: ${#missing[@]} import path(s) missing"
  declare -A add=()
  for imp in "${missing[@]}"; do
    pkg=$(lookup "$imp")
    if [[ -n $pkg ]]; then
      f=$(deb_file "$pkg")
      if [[ -z $f ]] || ! is_unpacked "$f"; then
        add[$pkg]=1
        continue
      fi
      log "  $imp: $pkg is unpacked but does not provide it"
    fi
    # not in any Debian package: take Debian's vendored copy, if any
    get_vendor
    if compgen -G "$VENDOR/$imp/*.go" >/dev/null; then
      [[ ! -d $EXTRA/src/$imp ]] || die "vendored $imp copied, yet Go still cannot find it"
      mkdir -p "$EXTRA/src/$imp"
      find "$VENDOR/$imp" -maxdepth 1 -type f -exec cp -t "$EXTRA/src/$imp" {} +
      log "  $imp <- docker.io source vendor/"
    else
      die "no Debian package or Debian source ships the Go import $imp"
    fi
  done
  if ((${#add[@]})); then
    fetch_and_unpack "${!add[@]}"
  fi
  unset add
done
sed 's/_.*//' "$PREFIX/.unpacked" | sort -u > "$PKGLIST"
log "$(wc -l < "$PKGLIST") Debian packages in use (list: $PKGLIST)"
# what came from the docker.io vendor/ tree (this run or an earlier one)
from_vendor=$(cd "$EXTRA/src" && find . -name '*.go' -printf '%h\n' | sed 's|^\./||' | sort -u | xargs)
log "from the docker.io source's vendor/: ${from_vendor:-nothing}"
step_done

# --------------------------------------------------------------- build ---

# BuildKit's version variables are normally set by its Makefile from git; use
# the BuildKit release docker.io pins and name the Debian source.
BK_VERSION=$(bk_release)
[[ -n $BK_VERSION ]] || BK_VERSION=v0.0.0+unknown
BK_REVISION="debian-$SRC_NAME-$DEB_VER"
LDFLAGS="-s -w"
LDFLAGS+=" -X github.com/moby/buildkit/version.Version=$BK_VERSION"
LDFLAGS+=" -X github.com/moby/buildkit/version.Revision=$BK_REVISION"

for cmd in buildctl buildkitd; do
  step "go build $cmd"
  (cd "$BK_SRC" && go build -trimpath -tags "$TAGS" -ldflags "$LDFLAGS" \
      -o "$BIN/$cmd.new" "./cmd/$cmd")
  mv -f "$BIN/$cmd.new" "$BIN/$cmd"
  step_done
done

{
  echo "source=$SRC_NAME $DEB_VER ($SOURCE_PKG)"
  echo "buildkit=$BK_VERSION"
  echo "go=$(go version)"
  echo "tags=$TAGS"
  echo "packages=$(wc -l < "$PKGLIST")"
  echo "vendored=$from_vendor"
  echo "built=$(date -u +%FT%TZ)"
} > "$STAMP"

print_versions
ls -l "$BIN/buildkitd" "$BIN/buildctl" >&2
log "total: $(elapsed "$T_START") s"
