package credential

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/kubecache"
)

// TestResolveReportsForbiddenReferences: a referenced object the manager's RBAC does not reach
// (with the chart's watchNamespaces, a cluster credential's clientSecretRef or caBundleRef in an
// unwatched namespace) is Ready=False Unauthorized, naming the object, rather than an error that
// the workqueue retries forever while the status says nothing.
func TestResolveReportsForbiddenReferences(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	// The API server refuses every read, as it does outside the namespaces the Roles cover.
	forbidden := func(_ context.Context, _ client.WithWatch, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
		resource := "secrets"
		switch obj.(type) {
		case *corev1.ConfigMap:
			resource = "configmaps"
		case *corev1.ServiceAccount:
			resource = "serviceaccounts"
		}
		return apierrors.NewForbidden(schema.GroupResource{Resource: resource}, key.Name, errors.New("RBAC: access denied"))
	}
	api := fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{Get: forbidden}).Build()
	meta := fake.NewClientBuilder().WithScheme(scheme).Build() // the reference cache: knows nothing
	d := &Deps{References: kubecache.NewReferenceReader[Waiter](api, meta, scheme)}
	key := types.NamespacedName{Namespace: "elsewhere", Name: "sp"}
	spec := &v1alpha1.DatabricksCredentialSpec{Host: "https://adb-1.2.azuredatabricks.net"}
	for name, tt := range map[string]struct {
		id   Identity
		want string
	}{
		"client-credentials Secret": {Identity{Spec: spec, ClientSecret: &SecretKeys{NamespacedName: key}}, `Secret "sp" in namespace "elsewhere"`},
		"certificate Secret":        {Identity{Spec: spec, Certificate: &key}, `Secret "sp" in namespace "elsewhere"`},
		"ServiceAccount":            {Identity{Spec: spec, ServiceAccount: &key}, `ServiceAccount "sp" in namespace "elsewhere"`},
		"CA ConfigMap":              {Identity{Spec: spec, CABundle: &ConfigMapKey{NamespacedName: key}}, `ConfigMap "sp" in namespace "elsewhere"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := d.resolve(context.Background(), Waiter{}, tt.id)
			var cerr *ConditionError
			if !errors.As(err, &cerr) {
				t.Fatalf("resolve = %v, want a *ConditionError", err)
			}
			if cerr.Reason != v1alpha1.ReasonUnauthorized || !strings.Contains(cerr.Message, "may not read "+tt.want) {
				t.Errorf("got %s: %s, want %s naming %s", cerr.Reason, cerr.Message, v1alpha1.ReasonUnauthorized, tt.want)
			}
			if strings.Contains(cerr.Error(), "access denied") {
				t.Errorf("the API's message is quoted: %s", cerr.Error())
			}
		})
	}
}
