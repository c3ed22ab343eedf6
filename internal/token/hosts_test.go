package token

import (
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
