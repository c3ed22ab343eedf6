// Package v1alpha1 contains the dbtoken.io/v1alpha1 API: DatabricksCredential, a request to keep
// a fresh Databricks workspace OAuth token in a Kubernetes Secret.
//
// +kubebuilder:object:generate=true
// +groupName=dbtoken.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "dbtoken.io", Version: "v1alpha1"}

	// SchemeBuilder registers the Go types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
