package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// TestConfigAppliesServerSide sends the kustomize trees and samples to the apiserver with
// --dry-run=server, so schema, CEL rules and defaulting judge them, not only YAML syntax.
func TestConfigAppliesServerSide(t *testing.T) {
	t.Parallel()
	// A dry run creates nothing, so the namespaces that the manifests put objects in must exist.
	ensureNamespace(t, "databricks-token-operator-system")
	ensureNamespace(t, "analytics")

	dryRun := func(t *testing.T, args ...string) {
		t.Helper()
		out, err := kubectl(t, append([]string{"apply", "--dry-run=server"}, args...)...)
		if err != nil {
			t.Fatalf("kubectl apply --dry-run=server %v: %v\n%s", args, err, out)
		}
	}

	t.Run("config/default", func(t *testing.T) { dryRun(t, "-k", "config/default") })
	t.Run("config/samples", func(t *testing.T) { dryRun(t, "-k", "config/samples") })

	files, err := filepath.Glob(filepath.Join(repoRoot, "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		n++
		rel, _ := filepath.Rel(repoRoot, f)
		t.Run(rel, func(t *testing.T) { dryRun(t, "-f", rel) })
	}
	if n == 0 {
		t.Error("config/samples holds no manifests")
	}

	install := filepath.Join(repoRoot, "dist", "install.yaml")
	if _, err := os.Stat(install); err != nil {
		t.Logf("dist/install.yaml not present (%v); not checked", err)
		return
	}
	t.Run("dist/install.yaml", func(t *testing.T) { dryRun(t, "-f", "dist/install.yaml") })
}
