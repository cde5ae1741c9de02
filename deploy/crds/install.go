package crds

import (
	"context"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// Install creates each CRD, or updates it when it exists, then waits until
// every one is Established or ctx ends. With no CRDs given it installs All.
func Install(ctx context.Context, cfg *rest.Config, list ...*apiextensionsv1.CustomResourceDefinition) error {
	if len(list) == 0 {
		var err error
		if list, err = All(); err != nil {
			return err
		}
	}
	cs, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("crds: apiextensions client: %w", err)
	}
	api := cs.ApiextensionsV1().CustomResourceDefinitions()
	for _, crd := range list {
		crd = crd.DeepCopy()
		_, err := api.Create(ctx, crd, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			var cur *apiextensionsv1.CustomResourceDefinition
			if cur, err = api.Get(ctx, crd.Name, metav1.GetOptions{}); err == nil {
				crd.ResourceVersion = cur.ResourceVersion
				_, err = api.Update(ctx, crd, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return fmt.Errorf("crds: install %s: %w", crd.Name, err)
		}
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for _, crd := range list {
		for {
			cur, err := api.Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("crds: read %s: %w", crd.Name, err)
			}
			if Established(cur) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("crds: %s not established: %w (conditions: %+v)", crd.Name, ctx.Err(), cur.Status.Conditions)
			case <-tick.C:
			}
		}
	}
	return nil
}

// Established reports whether the API server serves crd.
func Established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}
