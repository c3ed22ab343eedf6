package packaging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/dbtoken/databricks-token-operator/internal/testenv"
)

// manifest is one object of a multi-document YAML stream, kept as JSON for typed decoding.
type manifest struct {
	Kind      string
	Name      string
	Namespace string
	JSON      []byte
}

// parseManifests splits a YAML stream into its objects, skipping empty documents.
func parseManifests(t *testing.T, data []byte) []manifest {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []manifest
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading YAML: %v", err)
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("parsing YAML: %v\n%s", err, doc)
		}
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(js, &head); err != nil {
			t.Fatalf("decoding %s: %v", js, err)
		}
		if head.Kind == "" {
			continue // an empty document, e.g. a template switched off by a value
		}
		out = append(out, manifest{Kind: head.Kind, Name: head.Metadata.Name, Namespace: head.Metadata.Namespace, JSON: js})
	}
}

// find returns the object of kind whose name is name, or nil.
func find(objs []manifest, kind, name string) *manifest {
	for i := range objs {
		if objs[i].Kind == kind && objs[i].Name == name {
			return &objs[i]
		}
	}
	return nil
}

// only returns the single object of kind, failing when there is not exactly one.
func only(t *testing.T, objs []manifest, kind string) manifest {
	t.Helper()
	var found []manifest
	for _, o := range objs {
		if o.Kind == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s, got %d: %v", kind, len(found), names(found))
	}
	return found[0]
}

func names(objs []manifest) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.Kind + "/" + o.Name
	}
	return out
}

// decode unmarshals m into a typed object, refusing unknown fields: a misspelt field in a
// template would otherwise be dropped silently.
func decode(t *testing.T, m manifest, into any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(m.JSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("decoding %s/%s: %v", m.Kind, m.Name, err)
	}
}

// namespaceManifest is a Namespace that enforces the restricted Pod Security Standard, so that
// applying a workload into it reports any violation as a warning.
func namespaceManifest(name string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %s
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/warn: restricted
`, name))
}

// ensureNamespace creates a restricted namespace for real: a server-side dry run of namespaced
// objects needs their namespace to exist.
func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	if r := kubectl(t, namespaceManifest(name), "apply", "-f", "-"); r.Err != nil {
		t.Fatalf("creating namespace %s: %s", name, r)
	}
}

// dryRunApply applies manifests with a server-side dry run and fails on an error or a Pod
// Security warning.
func dryRunApply(t *testing.T, manifests []byte) testenv.Result {
	t.Helper()
	r := kubectl(t, manifests, "apply", "--dry-run=server", "-f", "-")
	if r.Err != nil {
		t.Fatalf("kubectl apply --dry-run=server failed:\n%s", r)
	}
	if strings.Contains(r.Stderr, "would violate PodSecurity") {
		t.Fatalf("the manifests violate the restricted Pod Security Standard:\n%s", r.Stderr)
	}
	return r
}

// wantAllApplied checks that kubectl reported every object of objs.
func wantAllApplied(t *testing.T, r testenv.Result, objs []manifest) {
	t.Helper()
	for _, o := range objs {
		if !strings.Contains(r.Stdout, "/"+o.Name+" ") {
			t.Errorf("kubectl did not report %s/%s:\n%s", o.Kind, o.Name, r.Stdout)
		}
	}
}
