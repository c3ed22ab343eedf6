package token

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

const (
	testTenant       = "f4da2730-4463-4910-98a7-13d0523c0b2a"
	testClientID     = "5f1c0f6e-8a3b-4c1d-9e2f-0a1b2c3d4e5f"
	testClientSecret = "dose0123456789abcdef~Q8.s3cr3t_Value"
)

func databricksSpec(host string, scopes ...string) *v1alpha1.DatabricksCredentialSpec {
	return &v1alpha1.DatabricksCredentialSpec{
		Host:       host,
		Databricks: &v1alpha1.DatabricksIdentity{ClientSecretRef: v1alpha1.ClientSecretReference{Name: "sp"}},
		Scopes:     scopes,
	}
}

func azureSpec(authority, tenant string, scopes ...string) *v1alpha1.DatabricksCredentialSpec {
	return &v1alpha1.DatabricksCredentialSpec{
		Host: "https://adb-1234567890123456.7.azuredatabricks.net",
		Azure: &v1alpha1.AzureIdentity{
			TenantID:        tenant,
			AuthorityHost:   authority,
			ClientSecretRef: &v1alpha1.ClientSecretReference{Name: "sp"},
		},
		Scopes: scopes,
	}
}

func oauth2Spec(tokenURL string, style v1alpha1.AuthStyle, scopes ...string) *v1alpha1.DatabricksCredentialSpec {
	return &v1alpha1.DatabricksCredentialSpec{
		Host: "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com",
		OAuth2: &v1alpha1.OAuth2Identity{
			TokenURL:        tokenURL,
			AuthStyle:       style,
			ClientSecretRef: v1alpha1.ClientSecretReference{Name: "sp"},
		},
		Scopes: scopes,
	}
}

func TestNewRequest(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n")
	tests := map[string]struct {
		spec *v1alpha1.DatabricksCredentialSpec
		want Request
	}{
		"databricks, host with trailing slash": {
			spec: databricksSpec("https://adb-1234567890123456.7.azuredatabricks.net/"),
			want: Request{Kind: KindDatabricks, TokenURL: "https://adb-1234567890123456.7.azuredatabricks.net/oidc/v1/token",
				Scopes: []string{"all-apis"}, SendInHeader: true},
		},
		"databricks, host without trailing slash": {
			spec: databricksSpec("https://dbc-a1b2c3d4-e5f6.cloud.databricks.com"),
			want: Request{Kind: KindDatabricks, TokenURL: "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com/oidc/v1/token",
				Scopes: []string{"all-apis"}, SendInHeader: true},
		},
		"databricks, host with port": {
			spec: databricksSpec("https://127.0.0.1:8443/"),
			want: Request{Kind: KindDatabricks, TokenURL: "https://127.0.0.1:8443/oidc/v1/token",
				Scopes: []string{"all-apis"}, SendInHeader: true},
		},
		"databricks, custom scopes replace the default": {
			spec: databricksSpec("https://dbc-x.cloud.databricks.com", "sql", "offline_access"),
			want: Request{Kind: KindDatabricks, TokenURL: "https://dbc-x.cloud.databricks.com/oidc/v1/token",
				Scopes: []string{"sql", "offline_access"}, SendInHeader: true},
		},
		"azure, default authority": {
			spec: azureSpec("", testTenant),
			want: Request{Kind: KindAzure, TokenURL: "https://login.microsoftonline.com/" + testTenant + "/oauth2/v2.0/token",
				Scopes: []string{"2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"}},
		},
		"azure, sovereign authority with trailing slash": {
			spec: azureSpec("https://login.microsoftonline.us/", testTenant),
			want: Request{Kind: KindAzure, TokenURL: "https://login.microsoftonline.us/" + testTenant + "/oauth2/v2.0/token",
				Scopes: []string{AzureDatabricksScope}},
		},
		"azure, domain tenant": {
			spec: azureSpec(DefaultAuthorityHost, "contoso.onmicrosoft.com"),
			want: Request{Kind: KindAzure, TokenURL: "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
				Scopes: []string{AzureDatabricksScope}},
		},
		"azure, custom scopes replace the default": {
			spec: azureSpec("", testTenant, "api://2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"),
			want: Request{Kind: KindAzure, TokenURL: "https://login.microsoftonline.com/" + testTenant + "/oauth2/v2.0/token",
				Scopes: []string{"api://2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"}},
		},
		"oauth2, auth style unset means Header, no default scope": {
			spec: oauth2Spec("https://idp.example.com/oauth2/token", ""),
			want: Request{Kind: KindOAuth2, TokenURL: "https://idp.example.com/oauth2/token", SendInHeader: true},
		},
		"oauth2, Header": {
			spec: oauth2Spec("https://idp.example.com/oauth2/token", v1alpha1.AuthStyleHeader),
			want: Request{Kind: KindOAuth2, TokenURL: "https://idp.example.com/oauth2/token", SendInHeader: true},
		},
		"oauth2, Params": {
			spec: oauth2Spec("https://idp.example.com/oauth2/token", v1alpha1.AuthStyleParams),
			want: Request{Kind: KindOAuth2, TokenURL: "https://idp.example.com/oauth2/token"},
		},
		"oauth2, custom scopes, token URL kept verbatim": {
			spec: oauth2Spec("https://idp.example.com:9443/realms/x/token/", v1alpha1.AuthStyleParams, "a", "b"),
			want: Request{Kind: KindOAuth2, TokenURL: "https://idp.example.com:9443/realms/x/token/", Scopes: []string{"a", "b"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := NewRequest(tc.spec, testClientID, testClientSecret, ca)
			if err != nil {
				t.Fatalf("NewRequest: %v", err)
			}
			tc.want.ClientID, tc.want.ClientSecret, tc.want.CABundle = testClientID, testClientSecret, ca
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("NewRequest:\n got %#v scopes=%q inHeader=%v url=%s\nwant %#v scopes=%q inHeader=%v url=%s",
					got, got.Scopes, got.SendInHeader, got.TokenURL, tc.want, tc.want.Scopes, tc.want.SendInHeader, tc.want.TokenURL)
			}
		})
	}
}

func TestNewRequestInvalidSpec(t *testing.T) {
	twoBlocks := databricksSpec("https://dbc-x.cloud.databricks.com")
	twoBlocks.Azure = azureSpec("", testTenant).Azure
	tests := map[string]struct {
		spec        *v1alpha1.DatabricksCredentialSpec
		wantMessage string
	}{
		"no identity block": {
			spec:        &v1alpha1.DatabricksCredentialSpec{Host: "https://dbc-x.cloud.databricks.com"},
			wantMessage: "no identity block",
		},
		"two identity blocks": {
			spec:        twoBlocks,
			wantMessage: "2 identity blocks",
		},
		"databricks, http host": {
			spec:        databricksSpec("http://dbc-x.cloud.databricks.com"),
			wantMessage: "not an https:// URL",
		},
		"databricks, empty host": {
			spec:        databricksSpec(""),
			wantMessage: "not an https:// URL",
		},
		"databricks, host without scheme": {
			spec:        databricksSpec("dbc-x.cloud.databricks.com"),
			wantMessage: "not an https:// URL",
		},
		"azure, http authority": {
			spec:        azureSpec("http://login.microsoftonline.com", testTenant),
			wantMessage: "not an https:// URL",
		},
		"oauth2, ftp token URL": {
			spec:        oauth2Spec("ftp://idp.example.com/token", ""),
			wantMessage: "not an https:// URL",
		},
		"oauth2, token URL without host": {
			spec:        oauth2Spec("https:///token", ""),
			wantMessage: "not an https:// URL",
		},
		"oauth2, unparsable token URL": {
			spec:        oauth2Spec("https://[::1", ""),
			wantMessage: "not an https:// URL",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := NewRequest(tc.spec, testClientID, testClientSecret, nil)
			e := requireError(t, err, testClientSecret)
			if e.Reason != v1alpha1.ReasonInvalidSpec || e.Transient {
				t.Errorf("Reason %q Transient %v, want %s, permanent", e.Reason, e.Transient, v1alpha1.ReasonInvalidSpec)
			}
			if !strings.Contains(e.Message, tc.wantMessage) {
				t.Errorf("Message %q, want it to contain %q", e.Message, tc.wantMessage)
			}
			if e.Hint == "" {
				t.Error("Hint is empty, want what to fix")
			}
			if !reflect.DeepEqual(got, Request{}) {
				t.Errorf("Request %#v, want zero on error", got)
			}
		})
	}
}

func baseRequest() Request {
	return Request{
		Kind:         KindAzure,
		TokenURL:     "https://login.microsoftonline.com/" + testTenant + "/oauth2/v2.0/token",
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		Scopes:       []string{"a", "b"},
		CABundle:     []byte("bundle"),
	}
}

func TestRequestHashDeterministic(t *testing.T) {
	r := baseRequest()
	h := r.Hash()
	if len(h) != 64 {
		t.Fatalf("Hash %q: want 64 hex digits", h)
	}
	if _, err := hex.DecodeString(h); err != nil {
		t.Fatalf("Hash %q is not hex: %v", h, err)
	}
	// A copy with freshly allocated slices hashes the same: only content counts.
	c := r
	c.Scopes = append([]string(nil), r.Scopes...)
	c.CABundle = append([]byte(nil), r.CABundle...)
	if c.Hash() != h || r.Hash() != h {
		t.Errorf("Hash is not deterministic: %s, %s, %s", h, r.Hash(), c.Hash())
	}
	// Pinned: the hash is stored in every target Secret's inputs-hash annotation, so changing
	// its encoding mints a new token for every credential at upgrade. Change this value only
	// on purpose.
	const pinned = "d57c40dbda59430c1bd3f05c11ab2a7667d9b7b98135f6ec05c6d707eefd45fd"
	if h != pinned {
		t.Errorf("Hash = %s, want the pinned %s (did the encoding change?)", h, pinned)
	}
}

func TestRequestHashChanges(t *testing.T) {
	base := baseRequest()
	tests := map[string]func(r *Request){
		"kind":                        func(r *Request) { r.Kind = KindOAuth2 },
		"token URL (tenant)":          func(r *Request) { r.TokenURL = strings.Replace(r.TokenURL, testTenant, "other-tenant", 1) },
		"token URL (authority host)":  func(r *Request) { r.TokenURL = strings.Replace(r.TokenURL, ".com", ".us", 1) },
		"client ID":                   func(r *Request) { r.ClientID += "x" },
		"client secret":               func(r *Request) { r.ClientSecret += "x" },
		"client secret, one bit":      func(r *Request) { r.ClientSecret = "eose" + r.ClientSecret[4:] },
		"scopes, added":               func(r *Request) { r.Scopes = append(r.Scopes, "c") },
		"scopes, removed":             func(r *Request) { r.Scopes = r.Scopes[:1] },
		"scopes, none":                func(r *Request) { r.Scopes = nil },
		"scopes, order":               func(r *Request) { r.Scopes = []string{"b", "a"} },
		"scopes, joined into one":     func(r *Request) { r.Scopes = []string{"a b"} },
		"scopes, split differently":   func(r *Request) { r.Scopes = []string{"ab"} },
		"scopes, one empty added":     func(r *Request) { r.Scopes = []string{"a", "b", ""} },
		"auth style":                  func(r *Request) { r.SendInHeader = !r.SendInHeader },
		"CA bundle":                   func(r *Request) { r.CABundle = []byte("other bundle") },
		"CA bundle, removed":          func(r *Request) { r.CABundle = nil },
		"client ID/secret boundary":   func(r *Request) { r.ClientID, r.ClientSecret = r.ClientID+r.ClientSecret[:1], r.ClientSecret[1:] },
		"URL/client ID boundary":      func(r *Request) { r.TokenURL, r.ClientID = r.TokenURL+r.ClientID[:1], r.ClientID[1:] },
		"last scope/bundle boundary":  func(r *Request) { r.Scopes = []string{"a", "bbundle"}; r.CABundle = nil },
		"secret moved into client ID": func(r *Request) { r.ClientID, r.ClientSecret = r.ClientSecret, r.ClientID },
	}
	seen := map[string]string{base.Hash(): "base"}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			r := baseRequest()
			mutate(&r)
			h := r.Hash()
			if prev, ok := seen[h]; ok {
				t.Errorf("hash %s is the same as for %q", h, prev)
			}
			seen[h] = name
		})
	}
}

func TestRequestHashHidesSecret(t *testing.T) {
	r := baseRequest()
	h := r.Hash()
	for _, leak := range []string{r.ClientSecret, hex.EncodeToString([]byte(r.ClientSecret)), r.ClientSecret[:8]} {
		if strings.Contains(h, leak) {
			t.Errorf("Hash %s contains %q", h, leak)
		}
	}
}

func TestRequestNeverPrintsSecret(t *testing.T) {
	r := baseRequest()
	r.ClientSecret = "s3cr3t-do-not-print"
	type holder struct {
		Req  Request
		Ptr  *Request
		List []Request
	}
	outputs := map[string]string{
		"String":           r.String(),
		"GoString":         r.GoString(),
		"%v":               fmt.Sprintf("%v", r),
		"%+v":              fmt.Sprintf("%+v", r),
		"%#v":              fmt.Sprintf("%#v", r),
		"%s":               fmt.Sprintf("%s", r),
		"%q":               fmt.Sprintf("%q", r),
		"%v pointer":       fmt.Sprintf("%v", &r),
		"%+v pointer":      fmt.Sprintf("%+v", &r),
		"%#v pointer":      fmt.Sprintf("%#v", &r),
		"%v in a struct":   fmt.Sprintf("%v", holder{Req: r, Ptr: &r, List: []Request{r}}),
		"%+v in a struct":  fmt.Sprintf("%+v", holder{Req: r, Ptr: &r, List: []Request{r}}),
		"%#v in a struct":  fmt.Sprintf("%#v", holder{Req: r, Ptr: &r, List: []Request{r}}),
		"%v in a map":      fmt.Sprintf("%v", map[string]Request{"k": r}),
		"Println":          fmt.Sprintln(r, &r),
		"error wrapping":   fmt.Errorf("exchange %v failed: %w", r, errors.New("boom")).Error(),
		"slog text":        logWith(slog.NewTextHandler, r),
		"slog JSON":        logWith(slog.NewJSONHandler, r),
		"slog JSON, group": logWith(slog.NewJSONHandler, slog.GroupValue(slog.Any("req", r))),
		// zap (controller-runtime's logger) encodes structs it does not know with encoding/json.
		"json.Marshal":           mustJSON(t, r),
		"json.Marshal in a map":  mustJSON(t, map[string]any{"req": &r, "inputs": Inputs{ClientSecret: r.ClientSecret}}),
		"json.Marshal of a cert": mustJSON(t, ClientCertificate{CertPEM: []byte("cert"), KeyPEM: []byte(r.ClientSecret)}),
	}
	for name, out := range outputs {
		if strings.Contains(out, r.ClientSecret) {
			t.Errorf("%s prints the client secret: %s", name, out)
		}
	}
	if !strings.Contains(outputs["json.Marshal"], r.ClientID) {
		t.Errorf("json.Marshal = %s, want the client ID", outputs["json.Marshal"])
	}
	// What it does print is useful for an operator reading a log.
	for _, name := range []string{"String", "%v", "%+v", "%#v", "slog JSON"} {
		if out := outputs[name]; !strings.Contains(out, r.ClientID) || !strings.Contains(out, r.TokenURL) {
			t.Errorf("%s = %q, want the client ID and token URL", name, out)
		}
	}
}

func TestTokenNeverPrintsAccessToken(t *testing.T) {
	tok := Token{
		AccessToken: "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.access-token-do-not-print",
		IssuedAt:    time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC),
		ExpiresAt:   time.Date(2026, 11, 28, 19, 0, 0, 0, time.UTC),
	}
	outputs := map[string]string{
		"String":         tok.String(),
		"GoString":       tok.GoString(),
		"%v":             fmt.Sprintf("%v", tok),
		"%+v":            fmt.Sprintf("%+v", tok),
		"%#v":            fmt.Sprintf("%#v", tok),
		"%s":             fmt.Sprintf("%s", tok),
		"%v pointer":     fmt.Sprintf("%v", &tok),
		"%#v pointer":    fmt.Sprintf("%#v", &tok),
		"%+v in a slice": fmt.Sprintf("%+v", []Token{tok}),
		"slog text":      logWith(slog.NewTextHandler, tok),
		"slog JSON":      logWith(slog.NewJSONHandler, tok),
	}
	for name, out := range outputs {
		for _, part := range strings.Split(tok.AccessToken, ".") {
			if strings.Contains(out, part) {
				t.Errorf("%s prints (part of) the access token: %s", name, out)
			}
		}
	}
	if got := tok.String(); !strings.Contains(got, "2026-11-28T19:00:00Z") {
		t.Errorf("String() = %q, want the expiry", got)
	}
	if got := tok.Lifetime(); got != time.Hour {
		t.Errorf("Lifetime() = %s, want 1h", got)
	}
}

// logWith logs v with a fresh slog handler and returns the output.
func logWith[H slog.Handler](newHandler func(w io.Writer, opts *slog.HandlerOptions) H, v any) string {
	var buf bytes.Buffer
	slog.New(newHandler(&buf, nil)).Info("exchange", "value", v)
	return buf.String()
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
