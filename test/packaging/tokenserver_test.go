package packaging

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/tokenserver"
	"github.com/dbtoken/databricks-token-operator/test/secretvolume"
)

// The samples that run the token-server sidecar, and the client container of each.
var tokenServerSamples = []struct{ file, client string }{
	{"config/samples/dbt_cronjob_token_server.yaml", "dbt"},
	{"config/samples/databricks_cli_job_token_server.yaml", "cli"},
}

// sidecarSample is one sample's pod, decoded.
type sidecarSample struct {
	objs    []manifest
	pod     corev1.PodSpec
	sidecar corev1.Container
	client  corev1.Container
}

func loadSidecarSample(t *testing.T, file, client string) sidecarSample {
	t.Helper()
	s := sidecarSample{objs: parseManifests(t, readFile(t, file))}
	for _, m := range s.objs {
		switch m.Kind {
		case "CronJob":
			var cj batchv1.CronJob
			decode(t, m, &cj)
			s.pod = cj.Spec.JobTemplate.Spec.Template.Spec
		case "Job":
			var j batchv1.Job
			decode(t, m, &j)
			s.pod = j.Spec.Template.Spec
		}
	}
	var found int
	for _, c := range s.pod.InitContainers {
		if c.Name == "token-server" {
			s.sidecar = c
			found++
		}
	}
	for _, c := range s.pod.Containers {
		if c.Name == client {
			s.client = c
			found++
		}
	}
	if found != 2 {
		t.Fatalf("%s: want an init container token-server and a container %s", file, client)
	}
	return s
}

// arg returns the value of --name=value in args.
func arg(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

func envVar(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// TestTokenServerSamplesApplyRestricted: the sidecar samples pass a server-side dry run in a
// namespace that enforces the restricted Pod Security Standard, native sidecar included.
func TestTokenServerSamplesApplyRestricted(t *testing.T) {
	ensureNamespace(t, "analytics")
	for _, s := range tokenServerSamples {
		t.Run(s.file, func(t *testing.T) {
			b := readFile(t, s.file)
			r := dryRunApply(t, b)
			wantAllApplied(t, r, parseManifests(t, b))
		})
	}
}

// TestTokenServerSamplesAreSidecars: the pod shape docs/long-runs.md relies on. A native sidecar
// with an exec startupProbe; restricted, read-only, non-root; the whole Secret mounted as a volume
// into the sidecar only; the client configured for metadata-service with the URL the sidecar
// serves, and no token of its own.
func TestTokenServerSamplesAreSidecars(t *testing.T) {
	for _, tt := range tokenServerSamples {
		t.Run(tt.file, func(t *testing.T) {
			s := loadSidecarSample(t, tt.file, tt.client)
			sc := s.sidecar
			if sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Error("the token server must be a native sidecar: an init container with restartPolicy: Always")
			}
			if !slices.Equal(sc.Command, []string{"/token-server"}) {
				t.Errorf("sidecar command %q, want [/token-server] (the binary in the operator image)", sc.Command)
			}
			if sc.StartupProbe == nil || sc.StartupProbe.Exec == nil || len(sc.StartupProbe.Exec.Command) < 2 ||
				sc.StartupProbe.Exec.Command[0] != "/token-server" || sc.StartupProbe.Exec.Command[1] != "probe" {
				t.Error("the sidecar needs an exec startupProbe running /token-server probe (an httpGet probe cannot reach the pod's loopback)")
			} else if got, want := arg(sc.StartupProbe.Exec.Command, "listen"), arg(sc.Args, "listen"); got != want {
				t.Errorf("the probe asks %q, the server listens on %q", got, want)
			}
			sec := sc.SecurityContext
			if sec == nil || sec.ReadOnlyRootFilesystem == nil || !*sec.ReadOnlyRootFilesystem ||
				sec.AllowPrivilegeEscalation == nil || *sec.AllowPrivilegeEscalation ||
				sec.RunAsNonRoot == nil || !*sec.RunAsNonRoot || sec.Capabilities == nil || !slices.Contains(sec.Capabilities.Drop, "ALL") {
				t.Error("the sidecar must run non-root on a read-only root filesystem, without privilege escalation or capabilities")
			}
			if sc.Resources.Limits.Memory().IsZero() {
				t.Error("the sidecar should have a memory limit")
			}

			// The Secret: a whole volume (no subPath, no items), read-only, in the sidecar only.
			dir := arg(sc.Args, "secret-dir")
			var volName string
			for _, m := range sc.VolumeMounts {
				if m.MountPath == dir {
					volName = m.Name
					if m.SubPath != "" || m.SubPathExpr != "" {
						t.Error("the Secret is mounted with subPath: the kubelet never updates such a mount")
					}
					if !m.ReadOnly {
						t.Error("mount the Secret read-only")
					}
				}
			}
			if volName == "" {
				t.Fatalf("no volume is mounted at --secret-dir %q", dir)
			}
			var secretName string
			for _, v := range s.pod.Volumes {
				if v.Name == volName && v.Secret != nil {
					secretName = v.Secret.SecretName
					if len(v.Secret.Items) != 0 {
						t.Error("the Secret volume selects items: keep every key (the expiry key too)")
					}
				}
			}
			if secretName == "" {
				t.Fatalf("volume %s is not a Secret volume", volName)
			}
			for _, m := range s.client.VolumeMounts {
				if m.Name == volName {
					t.Error("the client mounts the token Secret; only the sidecar needs it")
				}
			}
			for _, e := range s.client.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Key == v1alpha1.DefaultTokenKey {
					t.Errorf("the client reads %s from the Secret once (env %s): it would expire mid-run", v1alpha1.DefaultTokenKey, e.Name)
				}
			}
			if len(s.client.EnvFrom) != 0 {
				t.Error("envFrom would hand the client DATABRICKS_TOKEN, read once")
			}

			// The client's configuration.
			if e, _ := envVar(s.client, "DATABRICKS_AUTH_TYPE"); e.Value != "metadata-service" {
				t.Errorf("DATABRICKS_AUTH_TYPE = %q, want metadata-service", e.Value)
			}
			u, _ := envVar(s.client, "DATABRICKS_METADATA_SERVICE_URL")
			want := "http://" + arg(sc.Args, "listen") + tokenserver.TokenPathPrefix + "$(POD_UID)"
			if u.Value != want {
				t.Errorf("DATABRICKS_METADATA_SERVICE_URL = %q, want %q (the sidecar's address and the pod UID)", u.Value, want)
			}
			uid, _ := envVar(s.client, "POD_UID")
			secret, _ := envVar(sc, "TOKEN_SERVER_PATH_SECRET")
			for _, e := range []corev1.EnvVar{uid, secret} {
				if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.uid" {
					t.Errorf("%s must come from metadata.uid, in both containers alike", e.Name)
				}
			}
		})
	}
}

// TestTokenServerSamplesServeTheirClient runs the real token-server binary with each sample's
// sidecar arguments and environment over a Secret volume shaped like the operator's, and asks it
// what the sample's client asks: the URL from its environment, the host it would send. Then the
// sample's startup probe command. Both must succeed, so the samples' pieces fit the binary.
func TestTokenServerSamplesServeTheirClient(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "token-server")
	if r := run(t, nil, "go", "build", "-o", bin, "./cmd/token-server"); r.Err != nil {
		t.Fatalf("go build: %s", r)
	}
	hosts := credentialHosts(t)
	for _, tt := range tokenServerSamples {
		t.Run(tt.file, func(t *testing.T) {
			s := loadSidecarSample(t, tt.file, tt.client)
			var secretName string
			for _, v := range s.pod.Volumes {
				if v.Secret != nil {
					secretName = v.Secret.SecretName
				}
			}
			host, ok := hosts[secretName]
			if !ok {
				t.Fatalf("no sample credential writes the Secret %s", secretName)
			}
			exp := time.Now().Add(time.Hour).Truncate(time.Second)
			tok := sampleJWT(exp)
			vol, err := secretvolume.New(t.TempDir(), secretvolume.Strings(map[string]string{
				v1alpha1.DefaultHostKey:       host,
				v1alpha1.DefaultTokenKey:      tok,
				"DATABRICKS_TOKEN_EXPIRES_AT": exp.UTC().Format(time.RFC3339),
			}))
			if err != nil {
				t.Fatal(err)
			}

			// The sidecar as the sample runs it, on a free port and the test volume.
			const podUID = "5f1c9a3e-2b7d-4e8f-a6c1-9d3b7e2f4a10"
			args := slices.Clone(s.sidecar.Args)
			for i, a := range args {
				switch {
				case strings.HasPrefix(a, "--listen="):
					args[i] = "--listen=127.0.0.1:0"
				case strings.HasPrefix(a, "--secret-dir="):
					args[i] = "--secret-dir=" + vol.Path()
				}
			}
			addr, logs := startTokenServer(t, bin, args, []string{"TOKEN_SERVER_PATH_SECRET=" + podUID})

			// The client's request: its URL with $(POD_UID) expanded and the port moved, and the
			// host the SDK sends (the profile's host with https:// added for dbt; the Secret's
			// DATABRICKS_HOST for the CLI).
			u, _ := envVar(s.client, "DATABRICKS_METADATA_SERVICE_URL")
			url := strings.Replace(strings.ReplaceAll(u.Value, "$(POD_UID)", podUID), arg(s.sidecar.Args, "listen"), addr, 1)
			asked := host
			if e, ok := envVar(s.client, "DATABRICKS_HOSTNAME"); ok {
				asked = "https://" + e.Value
			}
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set(tokenserver.VersionHeader, tokenserver.Version)
			req.Header.Set(tokenserver.HostHeader, asked)
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || body["access_token"] != tok || body["expires_on"] != float64(exp.Unix()) {
				t.Fatalf("the sample's client gets %d %v from the sample's sidecar", resp.StatusCode, body["error_description"])
			}

			probe := slices.Clone(s.sidecar.StartupProbe.Exec.Command)
			probe[0] = bin
			for i, a := range probe {
				if strings.HasPrefix(a, "--listen=") {
					probe[i] = "--listen=" + addr
				}
			}
			if out, err := exec.Command(probe[0], probe[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("the sample's startup probe fails: %v %s", err, out)
			}
			if strings.Contains(logs(), tok) || strings.Contains(logs(), podUID) {
				t.Errorf("the sidecar's log holds the token or the path secret")
			}
		})
	}
}

// TestTokenServerProfileRendersForDBT renders the long-runs sample's profiles.yml the way dbt
// does (env_var from the dbt container's environment) and checks what dbt-databricks reads: a
// databricks output with a host without scheme, an http_path, and a token that is only a
// placeholder, with no auth_type or client credentials that would make dbt-databricks choose
// another authentication than the SDK's (DATABRICKS_AUTH_TYPE=metadata-service).
func TestTokenServerProfileRendersForDBT(t *testing.T) {
	const file = "config/samples/dbt_cronjob_token_server.yaml"
	s := loadSidecarSample(t, file, "dbt")
	var profilesYAML string
	var mountedProfiles bool
	for _, m := range s.objs {
		if m.Kind == "ConfigMap" {
			var cm corev1.ConfigMap
			decode(t, m, &cm)
			profilesYAML = cm.Data["profiles.yml"]
			for _, v := range s.pod.Volumes {
				if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
					for _, vm := range s.client.VolumeMounts {
						mountedProfiles = mountedProfiles || (vm.Name == v.Name && slices.Contains(s.client.Args, vm.MountPath))
					}
				}
			}
		}
	}
	if !mountedProfiles {
		t.Error("the dbt container must mount the profiles ConfigMap at its --profiles-dir")
	}
	// dbt renders {{ env_var('NAME') }} from the environment before parsing the YAML.
	envRef := regexp.MustCompile(`\{\{\s*env_var\('([A-Z_]+)'\)\s*\}\}`)
	var missing []string
	rendered := envRef.ReplaceAllStringFunc(profilesYAML, func(m string) string {
		name := envRef.FindStringSubmatch(m)[1]
		e, ok := envVar(s.client, name)
		if !ok || e.Value == "" {
			missing = append(missing, name)
		}
		return e.Value
	})
	if len(missing) != 0 {
		t.Fatalf("profiles.yml reads %v, which the dbt container does not set", missing)
	}
	var profiles map[string]struct {
		Target  string
		Outputs map[string]map[string]any
	}
	if err := yaml.Unmarshal([]byte(rendered), &profiles); err != nil {
		t.Fatalf("rendered profiles.yml is not YAML: %v", err)
	}
	profile := profiles["analytics"]
	out := profile.Outputs[profile.Target]
	if out == nil {
		t.Fatalf("no output for target %q", profile.Target)
	}
	str := func(k string) string { s, _ := out[k].(string); return s }
	if str("type") != "databricks" {
		t.Errorf("type = %q", str("type"))
	}
	if h := str("host"); !regexp.MustCompile(`^[a-z0-9.-]+$`).MatchString(h) {
		t.Errorf("host = %q: dbt-databricks wants a host name without scheme", h)
	}
	if !strings.HasPrefix(str("http_path"), "/sql/") {
		t.Errorf("http_path = %q", str("http_path"))
	}
	// A token must be set (dbt-databricks refuses a profile without token unless auth_type is
	// oauth), and must not be a real one read once: a fixed placeholder.
	if tok := str("token"); tok == "" || strings.Contains(profilesYAML, "env_var('DBT_ENV_SECRET") || strings.Contains(tok, ".") {
		t.Errorf("token = %q: want a placeholder, not a token read from the environment", tok)
	}
	for _, k := range []string{"auth_type", "client_id", "client_secret", "azure_client_id", "azure_client_secret"} {
		if _, ok := out[k]; ok {
			t.Errorf("profiles.yml sets %s, which makes dbt-databricks pick its own authentication over DATABRICKS_AUTH_TYPE", k)
		}
	}
	if cp, ok := out["connection_parameters"].(map[string]any); ok && cp["use_kernel"] == true {
		t.Error("use_kernel sends the profile's token itself, bypassing the SDK")
	}
}

// credentialHosts maps each Secret written by a sample credential to the credential's host.
func credentialHosts(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "config", "samples", "dbtoken_v1alpha1_databrickscredential_*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range parseManifests(t, b) {
			if m.Kind != "DatabricksCredential" {
				continue
			}
			var c v1alpha1.DatabricksCredential
			if err := json.Unmarshal(m.JSON, &c); err != nil {
				t.Fatal(err)
			}
			name := c.Name
			if c.Spec.Target.Name != "" {
				name = c.Spec.Target.Name
			}
			out[name] = c.Spec.Host
		}
	}
	return out
}

func sampleJWT(exp time.Time) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"RS256","typ":"at+jwt"}`)) + "." +
		enc.EncodeToString([]byte(fmt.Sprintf(`{"sub":"sample","exp":%d}`, exp.Unix()))) + "." + enc.EncodeToString([]byte("sig"))
}

// startTokenServer runs bin and returns its address (from its "listening" log line) and a
// function returning its log so far. It is stopped with SIGTERM when the test ends.
func startTokenServer(t *testing.T, bin string, args, env []string) (string, func() string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var logs strings.Builder
	addrc := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
			var rec struct{ Msg, Address string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" {
				addrc <- rec.Address
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	get := func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }
	select {
	case addr := <-addrc:
		return addr, get
	case <-done:
		t.Fatalf("token-server exited: %s", get())
	case <-time.After(10 * time.Second):
		t.Fatalf("token-server did not start: %s", get())
	}
	return "", get
}

const longRunsDoc = "docs/long-runs.md"

// TestLongRunsDocMatchesTheServer: docs/long-runs.md names only flags the binary has, with the
// binary's defaults; its troubleshooting table lists every error code the server answers with
// and no other; its Python snippet is valid Python; and the README points to it.
func TestLongRunsDocMatchesTheServer(t *testing.T) {
	doc := string(readFile(t, longRunsDoc))
	bin := filepath.Join(t.TempDir(), "token-server")
	if r := run(t, nil, "go", "build", "-o", bin, "./cmd/token-server"); r.Err != nil {
		t.Fatalf("go build: %s", r)
	}
	defaults := map[string]string{}
	for _, cmd := range [][]string{{"-h"}, {"probe", "-h"}} {
		out, err := exec.Command(bin, cmd...).CombinedOutput()
		if err != nil {
			t.Fatalf("token-server %v: %v %s", cmd, err, out)
		}
		flagLine := regexp.MustCompile(`(?m)^  -([a-z-]+)(?: \w+)?\n\s+(.*)$`)
		for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
			def := ""
			if d := regexp.MustCompile(`\(default ("[^"]*"|[^:)][^)]*)\)$`).FindStringSubmatch(m[2]); d != nil {
				def = strings.Trim(d[1], `"`)
			}
			defaults[m[1]] = def
		}
	}
	if len(defaults) < 9 {
		t.Fatalf("found only %d flags in the binary's help: %v", len(defaults), defaults)
	}
	for _, m := range regexp.MustCompile("`--([a-z-]+)").FindAllStringSubmatch(doc, -1) {
		if _, ok := defaults[m[1]]; !ok {
			t.Errorf("%s names --%s, which token-server does not have", longRunsDoc, m[1])
		}
	}
	rows := regexp.MustCompile("(?m)^\\| `--([a-z-]+)` \\|([^|]*)\\|")
	documented := map[string]bool{}
	for _, m := range rows.FindAllStringSubmatch(doc, -1) {
		documented[m[1]] = true
		if got := strings.Trim(strings.TrimSpace(m[2]), "`"); got != defaults[m[1]] {
			t.Errorf("%s: --%s defaults to %q, the binary says %q", longRunsDoc, m[1], got, defaults[m[1]])
		}
	}
	for name := range defaults {
		if name != "timeout" && !documented[name] {
			t.Errorf("%s's flag table lacks --%s", longRunsDoc, name)
		}
	}

	// Error codes: the Code* constants of internal/tokenserver against the troubleshooting table.
	src := string(readFile(t, "internal/tokenserver/handler.go"))
	codes := regexp.MustCompile(`(?m)^\s+Code\w+\s+= "(\w+)"`).FindAllStringSubmatch(src, -1)
	if len(codes) < 10 {
		t.Fatalf("found only %d error codes in internal/tokenserver", len(codes))
	}
	section := doc[strings.Index(doc, "## Troubleshooting"):]
	section = section[:strings.Index(section, "## Reference")]
	for _, c := range codes {
		if !strings.Contains(section, "`"+c[1]+"`") {
			t.Errorf("%s's troubleshooting table lacks the error %s", longRunsDoc, c[1])
		}
	}
	for _, m := range regexp.MustCompile("`([a-z]+(?:_[a-z]+)+)`").FindAllStringSubmatch(section, -1) {
		if !strings.Contains(src, `"`+m[1]+`"`) {
			t.Errorf("%s documents the error %s, which the server never answers", longRunsDoc, m[1])
		}
	}

	// The Python snippet parses (where python3 is installed; it is on the project's machines).
	py := regexp.MustCompile("(?s)```python\n(.*?)```").FindStringSubmatch(doc)
	if py == nil {
		t.Fatalf("%s has no Python snippet", longRunsDoc)
	}
	if python, err := exec.LookPath("python3"); err != nil {
		t.Logf("python3 not found; the snippet's syntax is not checked")
	} else if r := run(t, []byte(py[1]), python, "-c", "import ast, sys; ast.parse(sys.stdin.read())"); r.Err != nil {
		t.Errorf("the Python snippet does not parse: %s", r)
	}

	readme := string(readFile(t, "README.md"))
	if !strings.Contains(readme, "(docs/long-runs.md)") {
		t.Error("README.md does not link docs/long-runs.md")
	}
	for _, s := range tokenServerSamples {
		if !strings.Contains(doc, "(../"+s.file+")") {
			t.Errorf("%s does not link %s", longRunsDoc, s.file)
		}
	}
}
