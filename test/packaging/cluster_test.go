package packaging

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// TestClusterCredentialInstalled: dist/install.yaml and the chart install the
// ClusterDatabricksCredential CRD and its editor and viewer roles, and the roles are not
// aggregated into the built-in admin/edit/view roles: the kind is a platform-team resource.
func TestClusterCredentialInstalled(t *testing.T) {
	installed := parseManifests(t, readFile(t, installer))
	if find(installed, "CustomResourceDefinition", "clusterdatabrickscredentials.dbtoken.io") == nil {
		t.Errorf("%s has no ClusterDatabricksCredential CRD", installer)
	}
	chart := parseManifests(t, mustTemplate(t, "databricks-token-operator", ""))
	for _, tt := range []struct{ installerName, chartName, configFile string }{
		{"databricks-token-operator-clusterdatabrickscredential-editor-role", "databricks-token-operator-clusterdatabrickscredential-editor-role",
			"config/rbac/clusterdatabrickscredential_editor_role.yaml"},
		{"databricks-token-operator-clusterdatabrickscredential-viewer-role", "databricks-token-operator-clusterdatabrickscredential-viewer-role",
			"config/rbac/clusterdatabrickscredential_viewer_role.yaml"},
	} {
		t.Run(tt.configFile, func(t *testing.T) {
			var want rbacv1.ClusterRole
			decode(t, only(t, parseManifests(t, readFile(t, tt.configFile)), "ClusterRole"), &want)
			for where, m := range map[string]*manifest{
				installer: find(installed, "ClusterRole", tt.installerName),
				chartDir:  find(chart, "ClusterRole", tt.chartName),
			} {
				if m == nil {
					t.Errorf("%s has no ClusterRole %s", where, tt.installerName)
					continue
				}
				var got rbacv1.ClusterRole
				decode(t, *m, &got)
				if !reflect.DeepEqual(got.Rules, want.Rules) {
					t.Errorf("rules of %s in %s differ from %s\ngot:  %+v\nwant: %+v", m.Name, where, tt.configFile, got.Rules, want.Rules)
				}
				for k := range got.Labels {
					if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") {
						t.Errorf("%s in %s is aggregated (%s); a platform-team role must be bound explicitly", m.Name, where, k)
					}
				}
			}
		})
	}
}

// TestClusterCredentialSharesSchema: every field the ClusterDatabricksCredential shares with the
// DatabricksCredential has the same schema (type, defaults, patterns, CEL rules; descriptions
// aside), so that validation and docs cannot drift apart; the references differ only by their
// namespace; and the status holds every DatabricksCredential status field.
func TestClusterCredentialSharesSchema(t *testing.T) {
	namespaced := crdSchema(t, "config/crd/bases/dbtoken.io_databrickscredentials.yaml")
	cluster := crdSchema(t, "config/crd/bases/dbtoken.io_clusterdatabrickscredentials.yaml")
	nsSpec, clSpec := namespaced.Properties["spec"], cluster.Properties["spec"]

	for _, field := range []string{"host", "scopes", "renewBefore", "target"} {
		sameSchema(t, "spec."+field, nsSpec.Properties[field], clSpec.Properties[field])
	}
	for _, block := range []string{"azure", "databricks", "oauth2"} {
		nsBlock, clBlock := nsSpec.Properties[block], clSpec.Properties[block]
		for field, cl := range clBlock.Properties {
			if field == "clientSecretRef" {
				continue
			}
			sameSchema(t, "spec."+block+"."+field, nsBlock.Properties[field], cl)
		}
		sameReference(t, "spec."+block+".clientSecretRef", nsBlock.Properties["clientSecretRef"], clBlock.Properties["clientSecretRef"])
	}
	sameReference(t, "spec.caBundleRef", nsSpec.Properties["caBundleRef"], clSpec.Properties["caBundleRef"])

	for field, ns := range namespaced.Properties["status"].Properties {
		sameSchema(t, "status."+field, ns, cluster.Properties["status"].Properties[field])
	}
}

// sameReference checks that the cluster reference is the namespaced one plus a required namespace,
// and that the namespaced one has no namespace field.
func sameReference(t *testing.T, path string, ns, cl apiextensionsv1.JSONSchemaProps) {
	t.Helper()
	if _, ok := ns.Properties["namespace"]; ok {
		t.Errorf("%s of a DatabricksCredential has a namespace field: it may only read its own namespace", path)
	}
	if _, ok := cl.Properties["namespace"]; !ok || !slices.Contains(cl.Required, "namespace") {
		t.Errorf("%s of a ClusterDatabricksCredential needs a required namespace field", path)
	}
	for field, nsField := range ns.Properties {
		sameSchema(t, path+"."+field, nsField, cl.Properties[field])
	}
	if len(cl.Properties) != len(ns.Properties)+1 {
		t.Errorf("%s: the cluster reference has fields %v, want those of the namespaced one plus namespace", path, slices.Sorted(maps.Keys(cl.Properties)))
	}
}

func sameSchema(t *testing.T, path string, want, got apiextensionsv1.JSONSchemaProps) {
	t.Helper()
	want, got = *withoutDescriptions(&want), *withoutDescriptions(&got)
	if !reflect.DeepEqual(want, got) {
		w, _ := yaml.Marshal(want)
		g, _ := yaml.Marshal(got)
		t.Errorf("%s differs between the two kinds\nDatabricksCredential:\n%s\nClusterDatabricksCredential:\n%s", path, w, g)
	}
}

func withoutDescriptions(s *apiextensionsv1.JSONSchemaProps) *apiextensionsv1.JSONSchemaProps {
	out := s.DeepCopy()
	out.Description = ""
	for k, p := range out.Properties {
		out.Properties[k] = *withoutDescriptions(&p)
	}
	if out.Items != nil && out.Items.Schema != nil {
		out.Items.Schema = withoutDescriptions(out.Items.Schema)
	}
	if out.AdditionalProperties != nil && out.AdditionalProperties.Schema != nil {
		out.AdditionalProperties.Schema = withoutDescriptions(out.AdditionalProperties.Schema)
	}
	return out
}

func crdSchema(t *testing.T, file string) apiextensionsv1.JSONSchemaProps {
	t.Helper()
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(readFile(t, file), &crd); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return *crd.Spec.Versions[0].Schema.OpenAPIV3Schema
}
