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

command -v go >/dev/null || die "Go is not installed (need go >= 1.26 on PATH)"

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

# Any change to the pinned module graph or the toolchain gives a new cache directory.
digest="$(cat "$here"/{kubernetes,etcd,helm}/go.{mod,sum} "$here/build.sh" | sha256sum | cut -c1-12)"
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

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local
build_date="$(cd "$here/kubernetes" && go mod download -json "k8s.io/kubernetes@$k8s_version" \
	| awk -F'"' '$2 == "Time" { print $4; exit }')"
build_date="${build_date:-1970-01-01T00:00:00Z}"
start=$SECONDS

echo "building etcd $etcd_version" >&2
(cd "$here/etcd" && go build -trimpath \
	-ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd_version" \
	-o "$staging/etcd" go.etcd.io/etcd/server/v3)

echo "building kube-apiserver, kube-controller-manager, kube-scheduler $k8s_version" >&2
minor="${k8s_version#v*.}"
minor="${minor%%.*}"
major="${k8s_version#v}"
major="${major%%.*}"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
	k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
(cd "$here/kubernetes" && go build -trimpath -ldflags "$k8s_ldflags" -o "$staging/" \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler)

echo "building helm $helm_version" >&2
(cd "$here/helm" && go build -trimpath \
	-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
	-o "$staging/helm" helm.sh/helm/v3/cmd/helm)

"$staging/kube-apiserver" --version | grep -qx "Kubernetes $k8s_version" \
	|| die "kube-apiserver reports $("$staging/kube-apiserver" --version), expected $k8s_version"

rm -rf "$dest"
mv "$staging" "$dest"
trap - EXIT
echo "built in $((SECONDS - start))s" >&2
echo "$dest"
