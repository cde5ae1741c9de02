// Package kustomize renders the kustomize bases beside this file, as
// `kubectl apply -k` and `kustomize build` do, for the tests that check
// them (deploy/kustomize, e2e/deploy_test.go):
//
//   - cloud: wapper-cloud with the MapperPlugin CRD, namespaces, RBAC,
//     Deployment, Service, PodDisruptionBudget and NetworkPolicy;
//   - host: wapper-host as a DaemonSet beside KubeEdge's edgecore;
//   - kubeedge-crds: KubeEdge's Device, DeviceModel and DeviceStatus CRDs,
//     for clusters without KubeEdge.
//
// The CRD files are copies of deploy/crds (TestCRDCopies keeps them
// equal: kustomize reads no file outside a base's folder).
package kustomize

import (
	"fmt"
	"path/filepath"
	"runtime"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The bases, as folder names under Dir.
const (
	Cloud        = "cloud"
	Host         = "host"
	KubeEdgeCRDs = "kubeedge-crds"
)

// Dir returns the folder of the bases (deploy/kustomize).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Build renders the kustomization in folder dir (a base's name under Dir,
// or any path) and returns the YAML stream, objects in kustomize's order.
func Build(dir string) ([]byte, error) {
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(Dir(), dir)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return m.AsYaml()
}

// Objects renders like Build and returns the objects.
func Objects(dir string) ([]*unstructured.Unstructured, error) {
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(Dir(), dir)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range m.Resources() {
		obj, err := r.Map()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s: %w", dir, r.CurId(), err)
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
	return out, nil
}
