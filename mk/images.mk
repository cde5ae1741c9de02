# Container images of wapper-host and wapper-cloud (docs/deploy.md), built
# by hack/image/build.sh with hack/image (go-containerregistry): static
# binaries on an empty base, nonroot, reproducible (SOURCE_DATE_EPOCH is
# the last commit's time), for this machine's GOARCH only. No Docker daemon
# and no base image pull. e2e/images_test.go (make test) builds them twice,
# compares the digests, pushes and pulls them and runs the binaries.
#
#   make images                                   bin/images/NAME/ (OCI layout), NAME.tar, NAME.digest
#   make images IMAGE_PUSH=registry.example.com/wapper   ... and push NAME:VERSION there

IMAGE_DIR ?= bin/images

# make test builds them first, so that e2e/images_test.go's two builds
# find the -trimpath build cache warm (cold, it compiles every dependency
# once: minutes on 2 cores).
TEST_PREREQS += images

.PHONY: images

images:
	@GO='$(GO)' hack/image/build.sh $(IMAGE_DIR)

# deploy/cloud/wapper-cloud.yaml is deploy/kustomize/cloud rendered, and
# the bases' CRD files are copies of deploy/crds (kustomize reads nothing
# outside a base): after changing a base or the CRDs (make crds), run this;
# go test ./deploy/kustomize fails until then.
.PHONY: deploy-manifests
deploy-manifests:
	cp deploy/crds/mappers.wapper.dev_*.yaml deploy/kustomize/cloud/
	cp deploy/crds/devices.kubeedge.io_*.yaml deploy/kustomize/kubeedge-crds/
	$(GO) test -count=1 -run '^TestRenderedManifest$$' ./deploy/kustomize -update
