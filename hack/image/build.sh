#!/bin/sh
# build.sh OUT: the container images of wapper-host and wapper-cloud under
# OUT (make images: bin/images), for this machine's architecture (GOARCH;
# set GOARCH=arm64 for another one; no multi-platform index).
#
#   OUT/bin/wapper-host, OUT/bin/wapper-cloud   static (CGO_ENABLED=0, -trimpath)
#   OUT/NAME/                                   OCI image layout (skopeo, crane, podman pull oci:OUT/NAME)
#   OUT/NAME.tar                                tarball for docker load -i / podman load -i
#   OUT/NAME.digest                             the image's manifest digest
#
# Reproducible: every timestamp is SOURCE_DATE_EPOCH (default: the last
# commit's time), so the same commit builds the same digests anywhere.
# IMAGE_VERSION (default: git describe of a vX.Y.Z tag, else
# 0.0.0-git.HASH), IMAGE_REVISION (default: HEAD) and IMAGE_SOURCE go into
# the labels. IMAGE_PUSH=REGISTRY/PREFIX also pushes each image to
# REGISTRY/PREFIX/NAME:VERSION (credentials from the docker config;
# IMAGE_PLAIN_HTTP=1 for a loopback registry without TLS).
set -eu
out=${1:?usage: hack/image/build.sh OUT_DIR}
cd "$(dirname "$0")/../.."
GO=${GO:-go}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export SOURCE_DATE_EPOCH
if [ -z "${IMAGE_VERSION:-}" ]; then
	IMAGE_VERSION=$(git describe --tags --match 'v[0-9]*' 2>/dev/null || echo "0.0.0-git.$(git rev-parse --short=12 HEAD)")
fi
revision=${IMAGE_REVISION:-$(git rev-parse HEAD)}
source=${IMAGE_SOURCE:-https://wapper.dev/wapper}

mkdir -p "$out/bin"
CGO_ENABLED=0 $GO build -trimpath -o "$out/bin/" ./host/cmd/wapper-host ./cloud/cmd/wapper-cloud
tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
# The image tool runs here, whatever GOOS and GOARCH the images are for.
env -u GOOS -u GOARCH -u GOARM -u GOAMD64 CGO_ENABLED=0 $GO build -o "$tool/image" ./hack/image

image() {
	name=$1
	shift
	set -- --binary "$out/bin/$name" --name "$name" --out "$out/$name" --tar "$out/$name.tar" \
		--version "$IMAGE_VERSION" --revision "$revision" --source "$source" "$@"
	if [ -n "${IMAGE_PUSH:-}" ]; then
		set -- "$@" --push "$IMAGE_PUSH/$name:$IMAGE_VERSION"
		if [ -n "${IMAGE_PLAIN_HTTP:-}" ]; then
			set -- "$@" --plain-http
		fi
	fi
	"$tool/image" "$@" >"$out/$name.digest"
	echo "$name:$IMAGE_VERSION $(cat "$out/$name.digest")"
}

image wapper-host --dir /var/lib/wapper \
	--description "wapper-host: KubeEdge device mappers as sandboxed WebAssembly plugins (edge daemon)"
image wapper-cloud --dir /var/cache/wapper-cloud --port 8443/tcp \
	--description "wapper-cloud: Kubernetes controller and websocket hub for wapper-host"
