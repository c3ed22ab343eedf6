package token

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestParseHostPolicyInvalid(t *testing.T) {
	tests := map[string]string{
		"empty list":                    "",
		"only separators and spaces":    " , ,",
		"scheme":                        "https://login.microsoftonline.com",
		"path":                          "login.microsoftonline.com/common",
		"port":                          "127.0.0.1:8443",
		"user info":                     "user@idp.example.com",
		"space inside":                  "idp example.com",
		"bare star":                     "*",
		"star dot only":                 "*.",
		"star inside a label":           "a*.b.com",
		"star without dot":              "*example.com",
		"two wildcards":                 "*.*.example.com",
		"star in the middle":            "a.*.example.com",
		"invalid among valid ones":      "login.microsoftonline.com, https://evil.com",
		"bracketed IPv6 with port":      "[::1]:8443",
		"bracketed IPv6 with path":      "[::1]/token",
		"unclosed bracket":              "[::1",
		"brackets around a host name":   "[localhost]",
		"brackets around IPv4":          "[127.0.0.1]",
		"bare IPv6 (ambiguous w/ port)": "::1",
		"closing bracket only":          "localhost]",
	}
	for name, list := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := ParseHostPolicy(list)
			if err == nil {
				t.Fatalf("ParseHostPolicy(%q) = %+v, want an error", list, p)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error %q is not one line", err)
			}
		})
	}
}

func TestMustParseHostPolicyPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustParseHostPolicy(\"*\") did not panic")
		}
	}()
	MustParseHostPolicy("*")
}

func TestHostPolicyAllows(t *testing.T) {
	tests := map[string]struct {
		policy string
		url    string
		want   bool
	}{
		"exact":                               {"idp.example.com", "https://idp.example.com/oauth2/token", true},
		"exact, other host":                   {"idp.example.com", "https://evil.com/oauth2/token", false},
		"exact does not match a subdomain":    {"example.com", "https://a.example.com/token", false},
		"exact, case-insensitive URL":         {"idp.example.com", "https://IDP.Example.COM/token", true},
		"exact, case-insensitive pattern":     {"IDP.Example.COM", "https://idp.example.com/token", true},
		"exact, port in URL ignored":          {"idp.example.com", "https://idp.example.com:8443/token", true},
		"exact, spaces around pattern":        {" login.microsoftonline.com , idp.example.com ", "https://idp.example.com/token", true},
		"wildcard, subdomain":                 {"*.example.com", "https://a.example.com/token", true},
		"wildcard, deeper subdomain":          {"*.example.com", "https://a.b.example.com/token", true},
		"wildcard, not the apex":              {"*.example.com", "https://example.com/token", false},
		"wildcard, not a suffix without dot":  {"*.example.com", "https://badexample.com/token", false},
		"wildcard, not as a prefix":           {"*.example.com", "https://example.com.evil.com/token", false},
		"wildcard, case-insensitive":          {"*.Example.com", "https://A.EXAMPLE.com/token", true},
		"wildcard, port ignored":              {"*.example.com", "https://a.example.com:443/token", true},
		"IPv4":                                {"127.0.0.1", "https://127.0.0.1:41234/oidc/v1/token", true},
		"IPv4, other address":                 {"127.0.0.1", "https://127.0.0.2:41234/oidc/v1/token", false},
		"localhost":                           {"localhost", "https://localhost:8443/token", true},
		"IPv6":                                {"[::1]", "https://[::1]:41234/oidc/v1/token", true},
		"IPv6 without port":                   {"[::1]", "https://[::1]/token", true},
		"IPv6, non-canonical spelling in URL": {"[::1]", "https://[0:0:0:0:0:0:0:1]:8443/token", true},
		"IPv6, non-canonical pattern":         {"[0:0::1]", "https://[::1]/token", true},
		"IPv6, other address":                 {"[::1]", "https://[::2]/token", false},
		"IPv6 does not match IPv4 loopback":   {"[::1]", "https://127.0.0.1/token", false},
		"user info does not fool it":          {"idp.example.com", "https://idp.example.com@evil.com/token", false},
		"user info with allowed host":         {"idp.example.com", "https://evil.com:x@idp.example.com/token", true},
		"no host":                             {"idp.example.com", "https:///token", false},
		"relative URL":                        {"idp.example.com", "/token", false},
		"unparsable URL":                      {"idp.example.com", "https://[::1", false},
		"empty URL":                           {"idp.example.com", "", false},
		"several patterns, second matches":    {"login.microsoftonline.com,*.example.com", "https://x.example.com/t", true},
		"trailing dot is a different name":    {"idp.example.com", "https://idp.example.com./token", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := ParseHostPolicy(tc.policy)
			if err != nil {
				t.Fatalf("ParseHostPolicy(%q): %v", tc.policy, err)
			}
			if got := p.Allows(tc.url); got != tc.want {
				t.Errorf("ParseHostPolicy(%q).Allows(%q) = %v, want %v", tc.policy, tc.url, got, tc.want)
			}
		})
	}
}

func TestHostPolicyZeroValueAllowsNothing(t *testing.T) {
	var p HostPolicy
	for _, u := range []string{"https://login.microsoftonline.com/t/oauth2/v2.0/token", "https://127.0.0.1/"} {
		if p.Allows(u) {
			t.Errorf("zero HostPolicy allows %q, want nothing allowed", u)
		}
	}
}

func TestDefaultAllowedTokenHosts(t *testing.T) {
	p, err := ParseHostPolicy(DefaultAllowedTokenHosts)
	if err != nil {
		t.Fatalf("ParseHostPolicy(DefaultAllowedTokenHosts): %v", err)
	}
	tests := map[string]bool{
		"https://login.microsoftonline.com/" + testTenant + "/oauth2/v2.0/token": true,
		"https://login.microsoftonline.us/" + testTenant + "/oauth2/v2.0/token":  true,
		"https://login.chinacloudapi.cn/" + testTenant + "/oauth2/v2.0/token":    true,
		"https://adb-123.7.azuredatabricks.net/oidc/v1/token":                    true,
		"https://adb-123.7.databricks.azure.us/oidc/v1/token":                    true,
		"https://dbc-x.cloud.databricks.com/oidc/v1/token":                       true,
		"https://123.4.gcp.databricks.com/oidc/v1/token":                         true,
		"https://evil.com/oidc/v1/token":                                         false,
		"https://azuredatabricks.net/oidc/v1/token":                              false,
		"https://azuredatabricks.net.evil.com/oidc/v1/token":                     false,
		"https://adb-123.7.azuredatabricks.net.evil.com/oidc/v1/token":           false,
		"https://evilazuredatabricks.net/oidc/v1/token":                          false,
		"https://login.microsoftonline.com.evil.com/t/oauth2/v2.0/token":         false,
		"https://evil.login.microsoftonline.com/t/oauth2/v2.0/token":             false,
		"https://127.0.0.1:8443/oidc/v1/token":                                   false,
		"https://localhost/oidc/v1/token":                                        false,
	}
	for u, want := range tests {
		if got := p.Allows(u); got != want {
			t.Errorf("default policy Allows(%q) = %v, want %v", u, got, want)
		}
	}
}

// unicodeHostTricks are host spellings whose text and dialled name differ: Unicode case
// mapping, IDNA mapping (fullwidth letters, ideographic full stops, ignored characters),
// percent-encoding, and names IDNA refuses. For each, the allow-list must judge the name net/http
// dials, not the text.
var unicodeHostTricks = map[string]struct {
	url string
	// dialled is the host net/http connects to and verifies ("" when IDNA refuses the name).
	dialled string
	// allowed is the verdict of the default allow-list (Databricks and Entra ID of every cloud).
	allowed bool
}{
	"dotted capital I lowercases to i but dials a punycode name": {
		"https://x.azuredatabr\u0130cks.net/oidc/v1/token", "x.xn--azuredatabricks-eqi.net", false},
	"the same, percent-encoded": {
		"https://x.azuredatabr%C4%B0cks.net/oidc/v1/token", "x.xn--azuredatabricks-eqi.net", false},
	"the same, upper case": {
		"https://X.AZUREDATABR\u0130CKS.NET/oidc/v1/token", "x.xn--azuredatabricks-eqi.net", false},
	"dotted capital I in an Entra authority host": {
		"https://log\u0130n.microsoftonline.com/t/oauth2/v2.0/token", "xn--login-bgd.microsoftonline.com", false},
	"dotless small i": {
		"https://adb-1.azuredatabr\u0131cks.net/oidc/v1/token", "adb-1.xn--azuredatabrcks-ggc.net", false},
	"Cyrillic a looks Latin": {
		"https://x.\u0430zuredatabricks.net/oidc/v1/token", "x.xn--zuredatabricks-utl.net", false},
	"ideographic full stop before a foreign domain": {
		"https://x.azuredatabricks.net\u3002evil.com/oidc/v1/token", "x.azuredatabricks.net.evil.com", false},
	"fullwidth full stop before a foreign domain, percent-encoded": {
		"https://x.azuredatabricks.net%EF%BC%8Eevil.com/oidc/v1/token", "x.azuredatabricks.net.evil.com", false},
	"fullwidth letters map to the genuine domain": {
		"https://x.\uff41zuredatabricks.net/oidc/v1/token", "x.azuredatabricks.net", true},
	"soft hyphen is ignored by IDNA": {
		"https://x.azuredata\u00adbricks.net/oidc/v1/token", "x.azuredatabricks.net", true},
	"long s maps to s": {
		"https://login.micro\u017foftonline.com/t/oauth2/v2.0/token", "login.microsoftonline.com", true},
	"ideographic full stop inside the genuine domain": {
		"https://evil\u3002azuredatabricks.net/oidc/v1/token", "evil.azuredatabricks.net", true},
	"Kelvin sign": {
		"https://\u212a.azuredatabricks.net/oidc/v1/token", "k.azuredatabricks.net", true},
	"zero-width joiner is refused by IDNA": {
		"https://x.azure\u200ddatabricks.net/oidc/v1/token", "", false},
	"a lone combining mark is refused by IDNA": {
		"https://\u0301.azuredatabricks.net/oidc/v1/token", "", false},
}

// TestHostPolicyJudgesTheDialledName checks the verdict of the default allow-list on each trick,
// that Check returns the URL rewritten to the dialled ASCII name, and — with net/http itself —
// that the name DialHost computes is the one net/http dials for the original URL, and the one it
// dials for the rewritten URL.
func TestHostPolicyJudgesTheDialledName(t *testing.T) {
	policy := MustParseHostPolicy(DefaultAllowedTokenHosts)
	for name, tc := range unicodeHostTricks {
		t.Run(name, func(t *testing.T) {
			checked, ok := policy.Check(tc.url)
			if ok != tc.allowed {
				t.Fatalf("Check(%q) allowed = %v, want %v", tc.url, ok, tc.allowed)
			}
			if policy.Allows(tc.url) != tc.allowed {
				t.Errorf("Allows(%q) disagrees with Check", tc.url)
			}
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatalf("url.Parse(%q): %v", tc.url, err)
			}
			dial, dialOK := DialHost(u.Hostname())
			if tc.dialled == "" {
				if dialOK {
					t.Errorf("DialHost(%q) = %q, want a refusal", u.Hostname(), dial)
				}
				return
			}
			if !dialOK || dial != tc.dialled {
				t.Errorf("DialHost(%q) = %q, %v; want %q", u.Hostname(), dial, dialOK, tc.dialled)
			}
			if got := dialledByNetHTTP(t, tc.url); got != tc.dialled {
				t.Errorf("net/http dials %q for %q, want %q (the name the allow-list judges)", got, tc.url, tc.dialled)
			}
			if ok {
				if got := dialledByNetHTTP(t, checked); got != tc.dialled {
					t.Errorf("net/http dials %q for the checked URL %q, want %q", got, checked, tc.dialled)
				}
				if cu, err := url.Parse(checked); err != nil || cu.Hostname() != tc.dialled {
					t.Errorf("Check returned %q, want its host to be %q", checked, tc.dialled)
				}
			}
		})
	}
}

// TestHostPolicyRefusesNonASCIIPatterns keeps the allow-list itself plain ASCII.
func TestHostPolicyRefusesNonASCIIPatterns(t *testing.T) {
	for _, list := range []string{"*.azuredatabr\u0130cks.net", "login.micro\u017foftonline.com"} {
		_, err := ParseHostPolicy(list)
		if err == nil || !strings.Contains(err.Error(), "plain ASCII") {
			t.Errorf("ParseHostPolicy(%q) = %v, want an error saying host names must be plain ASCII", list, err)
		}
	}
}

// dialledByNetHTTP returns the host net/http dials for rawURL (the TLS server name is the same
// name: net/http derives both from the connection's target address). The dial is refused, so
// nothing leaves the machine.
func dialledByNetHTTP(t *testing.T, rawURL string) string {
	t.Helper()
	var dialled string
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
			dialled, _, _ = net.SplitHostPort(addr)
			return nil, errors.New("refused by the test")
		},
	}
	req, err := http.NewRequest(http.MethodPost, rawURL, nil)
	if err != nil {
		t.Fatalf("http.NewRequest(%q): %v", rawURL, err)
	}
	if resp, err := tr.RoundTrip(req); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("the refused dial of %q succeeded", rawURL)
	}
	return dialled
}
