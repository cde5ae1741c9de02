package kubeedgetest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// CRDs returns KubeEdge's own CustomResourceDefinitions (the module's
// build/crds, copied beside the binaries), for k8stest.Options.CRDs.
// cloudcore watches all of them.
func CRDs(binDir string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	bins, err := FindBinaries(binDir)
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(bins, "crds", "*", "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(b, crd); err != nil {
			return nil, fmt.Errorf("kubeedgetest: %s: %w", f, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue
		}
		out = append(out, crd)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("kubeedgetest: no CRDs in %s/crds", bins)
	}
	return out, nil
}
