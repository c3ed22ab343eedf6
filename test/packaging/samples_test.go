package packaging

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/yaml"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/secret"
)

// TestDBTSamplesRenderWhatDBTExpects renders the profiles.yml sample with the real renderer and
// checks the fields dbt-databricks reads, and checks that the env-based CronJob maps the token to
// a DBT_ENV_SECRET_ variable (dbt scrubs those from its logs) that its profiles.yml reads.
func TestDBTSamplesRenderWhatDBTExpects(t *testing.T) {
	var cred v1alpha1.DatabricksCredential
	for _, m := range parseManifests(t, readFile(t, "config/samples/dbt_cronjob_profiles_volume.yaml")) {
		if m.Kind == "DatabricksCredential" {
			if err := json.Unmarshal(m.JSON, &cred); err != nil {
				t.Fatal(err)
			}
		}
	}
	issued := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	const tok = "sample-token-value"
	desired, err := secret.Render(secret.Input{Host: cred.Spec.Host, Token: tok, IssuedAt: issued,
		ExpiresAt: issued.Add(time.Hour), InputsHash: "h", CredentialName: cred.Name, Target: cred.Spec.Target})
	if err != nil {
		t.Fatalf("rendering the sample: %v", err)
	}
	var profiles map[string]struct {
		Target  string
		Outputs map[string]map[string]any
	}
	if err := yaml.Unmarshal(desired.Data["profiles.yml"], &profiles); err != nil {
		t.Fatalf("rendered profiles.yml is not YAML: %v", err)
	}
	profile, ok := profiles["analytics"]
	if !ok || profile.Target == "" {
		t.Fatalf("profile analytics with a target missing: %v", profiles)
	}
	out := profile.Outputs[profile.Target]
	for key, want := range map[string]string{
		"type":  "databricks",
		"host":  "adb-1234567890123456.7.azuredatabricks.net", // dbt-databricks wants no scheme
		"token": tok,
	} {
		if got, _ := out[key].(string); got != want {
			t.Errorf("profiles.yml %s = %q, want %q", key, got, want)
		}
	}
	for _, key := range []string{"http_path", "schema", "catalog"} {
		if s, _ := out[key].(string); s == "" {
			t.Errorf("profiles.yml has no %s", key)
		}
	}

	var job batchv1.CronJob
	var profilesYAML string
	for _, m := range parseManifests(t, readFile(t, "config/samples/dbt_cronjob_env.yaml")) {
		switch m.Kind {
		case "CronJob":
			if err := json.Unmarshal(m.JSON, &job); err != nil {
				t.Fatal(err)
			}
		case "ConfigMap":
			var cm struct{ Data map[string]string }
			if err := json.Unmarshal(m.JSON, &cm); err != nil {
				t.Fatal(err)
			}
			profilesYAML = cm.Data["profiles.yml"]
		}
	}
	var mapped bool
	for _, env := range job.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Env {
		if env.Name == "DBT_ENV_SECRET_DATABRICKS_TOKEN" && env.ValueFrom != nil && env.ValueFrom.SecretKeyRef != nil &&
			env.ValueFrom.SecretKeyRef.Key == v1alpha1.DefaultTokenKey {
			mapped = true
		}
	}
	if !mapped {
		t.Error("the env sample must map DATABRICKS_TOKEN to DBT_ENV_SECRET_DATABRICKS_TOKEN")
	}
	if !strings.Contains(profilesYAML, "env_var('DBT_ENV_SECRET_DATABRICKS_TOKEN')") {
		t.Error("the env sample's profiles.yml must read the token with env_var('DBT_ENV_SECRET_DATABRICKS_TOKEN')")
	}
}

// TestSampleTemplatesPassValidation checks every target.data template of every credential in
// config/samples with the validator the controller runs before an exchange, so no sample teaches a
// template the operator refuses (e.g. one that computes on .Token, which the token rule forbids).
func TestSampleTemplatesPassValidation(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	templated := 0
	for _, file := range files {
		rel, _ := filepath.Rel(repoRoot, file)
		for _, m := range parseManifests(t, readFile(t, rel)) {
			var spec struct {
				Host   string
				Target v1alpha1.TargetSecret
			}
			switch m.Kind {
			case "DatabricksCredential", "ClusterDatabricksCredential":
				var obj struct{ Spec json.RawMessage }
				if err := json.Unmarshal(m.JSON, &obj); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(obj.Spec, &spec); err != nil {
					t.Fatalf("%s %s: %v", rel, m.Name, err)
				}
			default:
				continue
			}
			if len(spec.Target.Data) > 0 {
				templated++
			}
			if err := secret.ValidateTemplates(spec.Target, spec.Host); err != nil {
				t.Errorf("%s: %s %s: %v", rel, m.Kind, m.Name, err)
			}
		}
	}
	if templated == 0 {
		t.Error("no sample credential has target.data templates; the check checked nothing")
	}
}
