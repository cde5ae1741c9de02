package k8stest

import (
	"context"
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"wapper.dev/wapper/deploy/crds"
)

// InstallCRDs creates (or updates) each CRD and waits until all are
// Established. Install CRDs once per test binary: the API server delays
// the first create of a custom resource that comes within about 2s of its
// CRD becoming Established.
func (e *Env) InstallCRDs(ctx context.Context, list ...*apiextensionsv1.CustomResourceDefinition) error {
	if len(list) == 0 {
		return nil
	}
	if err := crds.Install(ctx, e.Config(), list...); err != nil {
		return fmt.Errorf("k8stest: %w", err)
	}
	e.log.Info("k8stest: CRDs established", "count", len(list))
	return nil
}
