// Package cloud_test checks the wapper-cloud deployment manifests.
package cloud_test

import (
	"os"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
)

// TestManifestsDecode decodes every document strictly and checks that the
// RBAC covers what wapper-cloud does. (The file is deploy/kustomize/cloud
// rendered; deploy/kustomize checks that it is up to date, and
// e2e/deploy_test.go runs wapper-cloud under its RBAC.)
func TestManifestsDecode(t *testing.T) {
	b, err := os.ReadFile("wapper-cloud.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sch := runtime.NewScheme()
	if err := scheme.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	if err := apiextensionsv1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	dec := serializer.NewCodecFactory(sch, serializer.EnableStrict).UniversalDeserializer()
	var kinds []string
	granted := map[string]bool{}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		if commentsOnly(doc) {
			continue
		}
		obj, gvk, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("decode: %v\n%s", err, doc)
		}
		kinds = append(kinds, gvk.Kind)
		var rules []rbacv1.PolicyRule
		switch o := obj.(type) {
		case *rbacv1.ClusterRole:
			if o.Name == "wapper-cloud" { // not wapper-fleet-viewer, which nobody is bound to
				rules = o.Rules
			}
		case *rbacv1.Role:
			rules = o.Rules
		case *appsv1.Deployment:
			if o.Spec.Template.Spec.ServiceAccountName != "wapper-cloud" {
				t.Error("the Deployment does not run as the wapper-cloud ServiceAccount")
			}
		}
		for _, r := range rules {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					granted[res+":"+v] = true
				}
			}
		}
	}
	for _, need := range []string{
		"devices:watch", "devicemodels:watch", "mapperplugins:watch", "secrets:watch",
		"devicestatuses:create", "devicestatuses:patch", "devices:patch", "mapperplugins/status:update", "secrets:create",
		"tokenreviews:create", "subjectaccessreviews:create", "leases:get", "leases:create", "leases:update", "leases:delete", "leases:list",
	} {
		if !granted[need] {
			t.Errorf("RBAC does not grant %s", need)
		}
	}
	if len(kinds) != 15 {
		t.Errorf("kinds %v", kinds)
	}
}

func commentsOnly(doc string) bool {
	for _, l := range strings.Split(doc, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}
