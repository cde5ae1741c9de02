#!/usr/bin/env bash
# gen-crds.sh: regenerate deploy/crds and the MapperPlugin deepcopy code with
# controller-gen (sigs.k8s.io/controller-tools, pinned below, run from the Go
# module proxy with `go run`).
#
#   - mappers.wapper.dev_mapperplugins.yaml comes from
#     apis/mappers/v1alpha1 and its kubebuilder markers.
#   - devices.kubeedge.io_{devices,devicemodels,devicestatuses}.yaml come
#     from KubeEdge's own types, github.com/kubeedge/api/apis/devices/v1beta1
#     at the version in go.mod. Those types carry no groupName or root-object
#     markers, so a copy of the package gets them added here; nothing else of
#     KubeEdge's schema changes. Like KubeEdge's published CRDs they have no
#     status subresource: KubeEdge writes Device status with plain patches.
#
# Usage: gen-crds.sh [OUTDIR]. With the default OUTDIR (deploy/crds) it also
# rewrites apis/mappers/v1alpha1/zz_generated.deepcopy.go; with another
# OUTDIR it only writes CRDs there (deploy/crds/crds_test.go uses that to
# check that the committed files are current).
set -euo pipefail
CONTROLLER_TOOLS_VERSION=${CONTROLLER_TOOLS_VERSION:-v0.23.0}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=${1:-deploy/crds}
CG=(go run "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS_VERSION")

# 1. MapperPlugin: deepcopy and CRD.
if [ "$OUT" = deploy/crds ]; then
  "${CG[@]}" object paths=./apis/mappers/v1alpha1
fi
"${CG[@]}" crd:crdVersions=v1 paths=./apis/mappers/v1alpha1 output:crd:dir="$OUT"

# 2. KubeEdge devices.kubeedge.io/v1beta1, from a marked-up copy inside this
# module (so that its imports resolve against go.mod).
KE_DIR=$(go list -m -f '{{.Dir}}' github.com/kubeedge/api)
[ -n "$KE_DIR" ] || go mod download github.com/kubeedge/api
KE_DIR=$(go list -m -f '{{.Dir}}' github.com/kubeedge/api)
tmp=hack/k8s/_kubeedge_devices_v1beta1.$$
rm -rf "$tmp"
trap 'rm -rf "$ROOT/$tmp"' EXIT
mkdir -p "$tmp"
cp "$KE_DIR"/apis/devices/v1beta1/*.go "$tmp/"
rm -f "$tmp"/*_test.go
chmod u+w "$tmp"/*.go
printf '// +groupName=devices.kubeedge.io\npackage v1beta1\n' >"$tmp/zz_crdgen_doc.go"
for kind in Device DeviceList DeviceModel DeviceModelList DeviceStatus DeviceStatusList; do
  f=$(grep -l "^type $kind struct" "$tmp"/*.go)
  sed -i "s|^type $kind struct|// +kubebuilder:object:root=true\ntype $kind struct|" "$f"
done
"${CG[@]}" crd:crdVersions=v1,allowDangerousTypes=true paths="./$tmp" output:crd:dir="$OUT"
ls "$OUT"/*.yaml
