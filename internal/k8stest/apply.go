package k8stest

import (
	"context"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"
)

// Apply creates, or replaces when they exist, the objects of a YAML
// stream (documents separated by "---" lines) through client-go, like
// kubectl apply. Namespaced objects without a namespace go to namespace.
func (e *Env) Apply(ctx context.Context, namespace, stream string) error {
	cfg := e.Config()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, doc := range strings.Split(stream, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			return fmt.Errorf("k8stest: apply: %w\n%s", err, doc)
		}
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("k8stest: apply %s: %w", gvk, err)
		}
		var api dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			if u.GetNamespace() == "" {
				u.SetNamespace(namespace)
			}
			api = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		// A controller writing the object's status meanwhile makes the
		// replace conflict: read and replace again, as kubectl does.
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := api.Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil {
				_, err = api.Create(ctx, u, metav1.CreateOptions{})
				return err
			}
			u.SetResourceVersion(cur.GetResourceVersion())
			_, err = api.Update(ctx, u, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("k8stest: apply %s %s: %w", gvk.Kind, u.GetName(), err)
		}
	}
	return nil
}
