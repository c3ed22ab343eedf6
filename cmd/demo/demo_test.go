package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/test/idp"
	"github.com/dbtoken/databricks-token-operator/test/workspace"
)

// maskPattern is what mask prints; the fingerprint tells tokens apart.
var maskPattern = regexp.MustCompile(`\S*…\[\d+ chars, #([0-9a-f]{8})\]`)

// TestDemo runs the whole demo with six-second tokens renewed three seconds before expiry, so a
// twelve-second run sees several refreshes. It needs the envtest binaries: KUBEBUILDER_ASSETS
// (set by `make test`), or hack/setup-envtest.sh builds them.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver, etcd and the manager")
	}
	var issuer *idp.Server
	var out bytes.Buffer
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	err := run(ctx, Config{
		AssetsDir:     os.Getenv("KUBEBUILDER_ASSETS"),
		Dir:           dir,
		Duration:      12 * time.Second,
		TokenLifetime: 6 * time.Second,
		RenewBefore:   3 * time.Second,
		OnIdP:         func(s *idp.Server) { issuer = s },
	}, &out)
	text := out.String()
	managerLog, _ := os.ReadFile(filepath.Join(dir, "manager.log"))
	if err != nil || t.Failed() {
		t.Logf("demo output:\n%s", text)
		t.Logf("manager log (tail):\n%s", tail(string(managerLog), 4000))
	}
	if err != nil {
		t.Fatalf("run: %v", err)
	}

	lines := strings.Split(text, "\n")
	ready := indexOf(lines, func(l string) bool { return strings.Contains(l, "Ready=True (TokenIssued)") })
	if ready < 0 {
		t.Fatal("no Ready=True (TokenIssued) line")
	}
	if !strings.Contains(lines[ready], "expiresAt ") || !strings.Contains(lines[ready], "nextRefreshTime ") {
		t.Errorf("the Ready line lacks expiresAt or nextRefreshTime: %q", lines[ready])
	}
	refresh := indexOf(lines, func(l string) bool { return strings.Contains(l, "refresh #1:") })
	if refresh < 0 {
		t.Fatal("no refresh line")
	}
	masks := maskPattern.FindAllStringSubmatch(lines[refresh], -1)
	if len(masks) != 2 || masks[0][1] == masks[1][1] {
		t.Errorf("the refresh line should show two different masked tokens: %q", lines[refresh])
	}
	if indexOf(lines[refresh:], func(l string) bool { return strings.Contains(l, "consumer: connection ok (as "+clientID+")") }) < 0 {
		t.Error("no successful consumer connection after the first refresh")
	}
	if strings.Contains(text, "FAILED") {
		t.Error("a consumer connection failed")
	}
	if !strings.Contains(text, "export KUBECONFIG="+filepath.Join(dir, "kubeconfig")+"; kubectl get dbcred,secrets -n demo") {
		t.Error("no kubeconfig hint")
	}

	// Nothing the identity provider issued, in full or in part, reached the output or the log.
	if issuer == nil {
		t.Fatal("OnIdP was not called")
	}
	issued := issuer.IssuedTokens()
	if len(issued) < 2 {
		t.Fatalf("the identity provider issued %d tokens, want at least 2", len(issued))
	}
	for _, tok := range issued {
		for where, s := range map[string]string{"output": text, "manager log": string(managerLog)} {
			if strings.Contains(s, tok) || strings.Contains(s, tok[len(tok)-24:]) {
				t.Errorf("an issued token appears in the %s", where)
			}
		}
	}
	if m := jwtPattern.FindString(text); m != "" {
		t.Errorf("a JWT appears in the output (%d chars)", len(m))
	}
	if strings.Contains(text, "dem8Q~") {
		t.Error("the client secret appears in the output")
	}

	// Temporary files are gone; the log stays.
	if _, err := os.Stat(filepath.Join(dir, "kubeconfig")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the kubeconfig was not removed: %v", err)
	}
	if len(managerLog) == 0 {
		t.Error("the manager log is empty")
	}
}

func indexOf(lines []string, f func(string) bool) int {
	for i, l := range lines {
		if f(l) {
			return i
		}
	}
	return -1
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func TestMask(t *testing.T) {
	tok := "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
	got := mask(tok)
	if strings.Contains(got, tok[6:12]) || !strings.HasPrefix(got, "eyJ0eX…[") {
		t.Errorf("mask = %q", got)
	}
	if !maskPattern.MatchString(got) {
		t.Errorf("mask %q does not match maskPattern", got)
	}
	if mask(tok) != got || mask(tok+"x") == got {
		t.Error("mask is not a stable fingerprint")
	}
	if short := mask("dapi12345"); strings.Contains(short, "dapi") {
		t.Errorf("a short token keeps its prefix: %q", short)
	}
}

func TestNarratorRedacts(t *testing.T) {
	var out bytes.Buffer
	n := newNarrator(&out)
	n.now = func() time.Time { return time.Date(2026, 1, 2, 12, 0, 3, 0, time.Local) }
	jwt := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
	opaque := "dapi0123456789abcdef0123456789"
	n.hide(opaque)
	n.say("token %s and %s", jwt, opaque)
	n.block("token: " + jwt + "\nnext: " + opaque)
	got := out.String()
	if strings.Contains(got, jwt) || strings.Contains(got, opaque) || strings.Contains(got, "c2lnbmF0dXJl") {
		t.Fatalf("a token leaked:\n%s", got)
	}
	if !strings.HasPrefix(got, "[12:00:03] token eyJhbG…[") {
		t.Errorf("say = %q", got)
	}
	if !strings.Contains(got, "\n           token: eyJhbG…[") {
		t.Errorf("block is not indented under the timestamp: %q", got)
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    Config
		wantErr bool
	}{
		{name: "defaults", want: Config{TokenLifetime: DefaultTokenLifetime, RenewBefore: DefaultRenewBefore}},
		{
			name: "environment",
			env:  map[string]string{"DEMO_DURATION": "200s", "DEMO_TOKEN_LIFETIME": "6s", "DEMO_RENEW_BEFORE": "3s", "KUBEBUILDER_ASSETS": "/assets"},
			want: Config{Duration: 200 * time.Second, TokenLifetime: 6 * time.Second, RenewBefore: 3 * time.Second, AssetsDir: "/assets"},
		},
		{
			name: "flags win over the environment",
			args: []string{"-duration", "1m", "-renew-before=2s"},
			env:  map[string]string{"DEMO_DURATION": "200s", "DEMO_RENEW_BEFORE": "3s"},
			want: Config{Duration: time.Minute, TokenLifetime: DefaultTokenLifetime, RenewBefore: 2 * time.Second},
		},
		{name: "bad environment value", env: map[string]string{"DEMO_DURATION": "200"}, wantErr: true},
		{name: "bad flag", args: []string{"-duration", "soon"}, wantErr: true},
		{name: "stray argument", args: []string{"200s"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if got.Duration != tt.want.Duration || got.TokenLifetime != tt.want.TokenLifetime ||
				got.RenewBefore != tt.want.RenewBefore || got.AssetsDir != tt.want.AssetsDir {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]Config{
		"fractional lifetime": {TokenLifetime: 1500 * time.Millisecond},
		"tiny renewBefore":    {RenewBefore: 500 * time.Millisecond},
		"negative duration":   {Duration: -time.Second},
	} {
		if err := cfg.setDefaults(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	cfg := Config{}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
}

func TestManifest(t *testing.T) {
	text := alignComments(strings.NewReplacer("${WORKSPACE_URL}", "https://127.0.0.1:4321", "${IDP_URL}", "https://127.0.0.1:1",
		"${RENEW_BEFORE}", "1m0s", "${HTTP_PATH}", "/sql/1.0/warehouses/x").Replace(manifest))
	var cred v1alpha1.DatabricksCredential
	if err := yaml.UnmarshalStrict([]byte(text), &cred); err != nil {
		t.Fatalf("the manifest does not decode: %v", err)
	}
	if cred.Spec.Azure == nil || cred.Spec.Azure.AuthorityHost != "https://127.0.0.1:1" || cred.Spec.Host != "https://127.0.0.1:4321" ||
		cred.Spec.RenewBefore == nil || cred.Spec.RenewBefore.Duration != time.Minute || cred.Spec.CABundleRef == nil {
		t.Errorf("decoded spec = %+v", cred.Spec)
	}
	for _, k := range []string{"DATABRICKS_HOST", "DATABRICKS_TOKEN", "profiles.yml"} {
		if cred.Spec.Target.Data[k] == "" {
			t.Errorf("target.data lacks %s", k)
		}
	}
	col := -1
	for _, l := range strings.Split(text, "\n") {
		if i := strings.Index(l, "  # "); i > 0 {
			if c := strings.Index(l, "#"); col < 0 {
				col = c
			} else if c != col {
				t.Errorf("comment not aligned: %q", l)
			}
		}
	}
}

func TestRefreshEvery(t *testing.T) {
	if got := refreshEvery(2*time.Minute, time.Minute); got != time.Minute {
		t.Errorf("2m/1m: %s", got)
	}
	if got := refreshEvery(6*time.Second, 10*time.Second); got != 3*time.Second {
		t.Errorf("clamped: %s", got)
	}
}

// TestConsumer covers the consumer's checks without a cluster: the Secret's data as the operator
// renders it, then broken variants.
func TestConsumer(t *testing.T) {
	issuer, err := idp.Start(idp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer issuer.Close()
	issuer.AddAzureApp(tenantID, clientID, "s3cret")
	ws, err := workspace.Start(workspace.Options{Validator: issuer, Audiences: []string{idp.AzureDatabricksResourceID}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	resp, err := issuer.Client().PostForm(issuer.URL()+"/"+tenantID+"/oauth2/v2.0/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {"s3cret"},
		"scope": {idp.AzureDatabricksResourceID + "/.default"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tok := issuer.IssuedTokens()[0]

	data := func(envToken, profileToken, httpPath string) map[string][]byte {
		return map[string][]byte{
			"DATABRICKS_HOST":  []byte(ws.URL()),
			"DATABRICKS_TOKEN": []byte(envToken),
			"profiles.yml": []byte("p:\n  target: prod\n  outputs:\n    prod:\n      type: databricks\n      host: " + ws.Hostname() +
				"\n      http_path: " + httpPath + "\n      token: " + profileToken + "\n"),
		}
	}
	c := &consumer{hc: ws.Client()}
	ctx := context.Background()

	conn, err := c.connect(ctx, data(tok, tok, ws.HTTPPath()))
	if err != nil || conn.user != clientID || conn.state != "RUNNING" || conn.profile != "p" || conn.target != "prod" {
		t.Fatalf("good Secret: %+v, %v", conn, err)
	}
	for name, d := range map[string]map[string][]byte{
		"different tokens":  data(tok, "other", ws.HTTPPath()),
		"invalid token":     data("not-a-token", "not-a-token", ws.HTTPPath()),
		"unknown warehouse": data(tok, tok, "/sql/1.0/warehouses/ffff"),
		"no token key":      {"DATABRICKS_HOST": []byte(ws.URL())},
		"bad profiles.yml":  {"DATABRICKS_HOST": []byte(ws.URL()), "DATABRICKS_TOKEN": []byte(tok), "profiles.yml": []byte("p: [")},
	} {
		if _, err := c.connect(ctx, d); err == nil {
			t.Errorf("%s: connected", name)
		} else if strings.Contains(err.Error(), tok) {
			t.Errorf("%s: the error quotes the token", name)
		}
	}
}
