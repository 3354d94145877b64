#!/usr/bin/env bash
# Builds the control-plane binaries the test suite runs (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, helm) from the Go module proxy, at the versions
# pinned in hack/testbin/*/go.mod, into a cache directory outside the repo keyed by those
# versions and the Go toolchain. A second run finds the cache and returns in well under a second.
#
#   hack/testbin/build.sh          build if needed; print the binary directory on stdout
#   hack/testbin/build.sh --dir    print the binary directory without building
#
# PLANTFED_TESTBIN_CACHE overrides the cache root (default ~/.cache/plantfed/testbin).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${PLANTFED_TESTBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/plantfed/testbin}"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler helm)

die() { echo "build.sh: $*" >&2; exit 1; }

if ! command -v go >/dev/null; then
	# Without Go the control-plane tests skip (and say so), so `make test` still runs the rest;
	# CI must build them.
	[[ -z "${CI:-}" && "${1:-}" != "--dir" ]] || die "Go is not installed (need go >= 1.26 on PATH)"
	echo "build.sh: Go is not installed; not building (control-plane tests will be skipped)" >&2
	exit 0
fi

# The version a go.mod requires for a module: the first "module vX" line outside replace.
required_version() {
	awk -v mod="$2" '$1 == mod && $2 ~ /^v/ { print $2; exit }' "$here/$1/go.mod"
}

k8s_version="$(required_version kubernetes k8s.io/kubernetes)"
etcd_version="$(required_version etcd go.etcd.io/etcd/server/v3)"
helm_version="$(required_version helm helm.sh/helm/v3)"
[[ -n "$k8s_version" && -n "$etcd_version" && -n "$helm_version" ]] \
	|| die "could not read pinned versions from $here/*/go.mod"
go_version="$(go env GOVERSION)"

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local

# Version ldflags, so the binaries report what they are.
etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd_version"
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
helm_ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
# The release's publication time from the module proxy keeps the build reproducible.
build_date="$(cd "$here/kubernetes" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
major="${k8s_version#v}"
major="${major%%.*}"
minor="${k8s_version#v*.}"
minor="${minor%%.*}"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
	# The module proxy does not say which commit a tag is; leave it empty rather than wrong.
	k8s_ldflags+=" -X $pkg.gitCommit= -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

# Any change to the pinned module graph, the flags or the toolchain gives a new directory.
digest="$(
	{
		cat "$here"/{kubernetes,etcd,helm}/go.{mod,sum}
		echo "$CGO_ENABLED $etcd_ldflags $k8s_ldflags $helm_ldflags"
	} | sha256sum | cut -c1-12
)"
key="k8s-${k8s_version}_etcd-${etcd_version}_helm-${helm_version}_${go_version}_${digest}"
dest="$cache_root/$key"

if [[ "${1:-}" == "--dir" ]]; then
	echo "$dest"
	exit 0
fi
[[ $# -eq 0 ]] || die "unknown argument: $1 (usage: build.sh [--dir])"

complete() {
	local b
	for b in "${binaries[@]}"; do [[ -x "$dest/$b" ]] || return 1; done
}

if complete; then
	echo "$dest"
	exit 0
fi

mkdir -p "$cache_root"
# One build at a time per cache root; a second caller waits, then finds the result.
exec 9>"$cache_root/.lock"
flock 9
if complete; then
	echo "$dest"
	exit 0
fi

staging="$(mktemp -d "$cache_root/.building-XXXXXX")"
chmod 755 "$staging"
trap 'rm -rf "$staging"' EXIT
start=$SECONDS

# The three builds run at once: module downloads and each big binary's single-threaded link overlap
# the others' compiles, which keep both cores busy. Each writes its own log, shown if it fails.
build() {
	local name="$1" dir="$2"
	shift 2
	echo "building $name" >&2
	if ! (cd "$here/$dir" && go build -trimpath "$@") >"$staging/.log-$dir" 2>&1; then
		echo "build.sh: building $name failed:" >&2
		tail -n 40 "$staging/.log-$dir" >&2
		return 1
	fi
}
build "etcd $etcd_version" etcd -ldflags "$etcd_ldflags" -o "$staging/etcd" go.etcd.io/etcd/server/v3 &
etcd_pid=$!
build "helm $helm_version" helm -ldflags "$helm_ldflags" -o "$staging/helm" helm.sh/helm/v3/cmd/helm &
helm_pid=$!
k8s_ok=0
build "kube-apiserver, kube-controller-manager, kube-scheduler $k8s_version" kubernetes -ldflags "$k8s_ldflags" \
	-o "$staging/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler || k8s_ok=1
etcd_ok=0 helm_ok=0
wait "$etcd_pid" || etcd_ok=1
wait "$helm_pid" || helm_ok=1
((k8s_ok == 0 && etcd_ok == 0 && helm_ok == 0)) || die "a build failed (its log is above)"
rm -f "$staging"/.log-*

# Each binary's whole output is read before it is matched: `cmd | grep -q` under pipefail fails at random when
# grep exits at its match while the command is still writing (etcd prints four lines; SIGPIPE).
reports() {
	local want="$1" out
	shift
	out="$("$@")" || die "$* failed: $out"
	grep -qx "$want" <<<"$out" || die "$1 reports \"$out\", expected \"$want\""
}
for b in kube-apiserver kube-controller-manager kube-scheduler; do
	reports "Kubernetes $k8s_version" "$staging/$b" --version
done
reports "etcd Version: ${etcd_version#v}" "$staging/etcd" --version
reports "$helm_version" "$staging/helm" version --template '{{.Version}}'

rm -rf "$dest"
mv "$staging" "$dest"
trap - EXIT
echo "built in $((SECONDS - start))s" >&2
echo "$dest"
