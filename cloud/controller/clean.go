package controller

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// clean clears the metadata that changes without the object changing.
func clean(mf *[]metav1.ManagedFieldsEntry, rv *string, gen *int64) {
	*mf, *rv, *gen = nil, "", 0
}
