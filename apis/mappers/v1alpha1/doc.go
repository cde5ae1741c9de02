// Package v1alpha1 holds the MapperPlugin API (group mappers.wapper.dev,
// version v1alpha1): the cluster-scoped resource that names a WebAssembly
// mapper module, the protocols it serves, what it may touch, its limits and
// its config.
//
// Both halves of wapper use it: wapper-host reads MapperPlugin YAML from a
// folder or from the cloud link, and wapper-cloud watches it in Kubernetes.
// The package therefore depends on k8s.io/apimachinery only, never on
// client-go.
//
// The usual flow is decode, then [MapperPlugin.Default], then
// [MapperPlugin.Validate].
//
// +kubebuilder:object:generate=true
// +groupName=mappers.wapper.dev
package v1alpha1
