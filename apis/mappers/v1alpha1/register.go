package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of MapperPlugin.
const GroupName = "mappers.wapper.dev"

// Version is the API version this package implements.
const Version = "v1alpha1"

// Kind is the kind of a MapperPlugin object.
const Kind = "MapperPlugin"

// Resource is the plural resource name of MapperPlugin, as in its CRD.
const Resource = "mapperplugins"

// SchemeGroupVersion is the group and version of this package's types.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: Version}

// GroupVersionKind is the full kind of a MapperPlugin object.
var GroupVersionKind = SchemeGroupVersion.WithKind(Kind)

// GroupVersionResource is the resource that serves MapperPlugin objects.
var GroupVersionResource = SchemeGroupVersion.WithResource(Resource)

var (
	// SchemeBuilder registers this package's types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds MapperPlugin and MapperPluginList to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion, &MapperPlugin{}, &MapperPluginList{})
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}
