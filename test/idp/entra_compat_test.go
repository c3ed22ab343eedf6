package idp

// Requests that real Entra clients send and Entra accepts, sent as raw forms so that each case
// is pinned independently of any client library.

import (
	"net/http"
	"strings"
	"testing"
)

// msalScope is what MSAL Go sends as scope on every confidential-client request for azScope:
// the requested scope followed by the OIDC scopes it always appends (AppendDefaultScopes in
// apps/internal/oauth/ops/accesstokens of microsoft-authentication-library-for-go v1.10.1).
const msalScope = azScope + " openid offline_access profile"

// MSAL appends "openid offline_access profile" to the scopes of every confidential-client
// request; Entra accepts them next to one resource's /.default in the client-credentials grant,
// and still refuses what it refused before.
func TestEntraClientCredentialsOIDCScopes(t *testing.T) {
	accepted := map[string]string{
		"MSAL Go's scope string":                      msalScope,
		"OIDC scopes first":                           "openid profile offline_access " + azScope,
		"app ID URI form with OIDC scopes":            "api://" + AzureDatabricksResourceID + "/.default openid offline_access profile",
		"one OIDC scope":                              azScope + " openid",
		"extra spaces between MSAL's scopes (folded)": azScope + "  openid   offline_access profile",
	}
	for name, scope := range accepted {
		t.Run(name, func(t *testing.T) {
			s := start(t, Options{})
			a := send(t, s, call{path: entraPath, form: with(entraForm(), "scope", scope)})
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			c, err := s.ValidateToken(a.object(t)["access_token"].(string))
			if err != nil || c.Audience != AzureDatabricksResourceID || c.Scope != "" {
				t.Errorf("token: %+v, %v", c, err)
			}
			if _, ok := a.object(t)["scope"]; ok {
				t.Error("Entra's client-credentials answer has no scope field")
			}
		})
	}

	refused := []struct {
		name, scope string
		status      int
		errCode     string
		aadsts      int
		message     string
	}{
		// The answer MSAL Go's maintainers quote for a request without a resource scope
		// (microsoft-authentication-library-for-go issue #304 and the comment on scopeError in
		// apps/internal/oauth/oauth.go): the OIDC scopes alone are no client-credentials scope.
		{"OIDC scopes only", "openid offline_access profile", 400, "invalid_scope", AADSTSScopeNeedsDefaultSuffix,
			"The provided value for scope openid offline_access profile is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."},
		{"delegated scope with OIDC scopes", AzureDatabricksResourceID + "/user_impersonation openid offline_access profile", 400, "invalid_scope", AADSTSScopeNeedsDefaultSuffix,
			"The provided value for scope " + AzureDatabricksResourceID + "/user_impersonation openid offline_access profile is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."},
		{"two resources with OIDC scopes", azScope + " https://graph.microsoft.com/.default openid offline_access profile", 400, "invalid_scope", AADSTSInvalidScopeParam, ""},
		// The fake's choice (not observed): only the three OIDC scopes that MSAL sends are
		// set aside; email, which no client sends here, is refused like any other scope.
		{"email", azScope + " email", 400, "invalid_scope", AADSTSScopeNeedsDefaultSuffix, ""},
		{"Databricks scope next to .default", azScope + " all-apis", 400, "invalid_scope", AADSTSScopeNeedsDefaultSuffix, ""},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := start(t, Options{Clock: clock.Now})
			checkEntraError(t, send(t, s, call{path: entraPath, form: with(entraForm(), "scope", tt.scope)}), clock, tt.status, tt.errCode, tt.aadsts, tt.message)
		})
	}
}

// MSAL Go refuses a tenant discovery document without authorization_endpoint, token_endpoint
// or issuer (TenantDiscoveryResponse.Validate), even for the client-credentials grant that
// never uses the authorization endpoint. Entra's document has all of them.
func TestEntraDiscoveryDocument(t *testing.T) {
	s := start(t, Options{})
	a := send(t, s, call{method: http.MethodGet, path: "/" + tenantID + "/v2.0/.well-known/openid-configuration"})
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("%d %s: %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	d := a.object(t)
	base := s.URL() + "/" + tenantID
	for k, want := range map[string]string{
		"authorization_endpoint":        base + "/oauth2/v2.0/authorize",
		"token_endpoint":                base + "/oauth2/v2.0/token",
		"device_authorization_endpoint": base + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":          base + "/oauth2/v2.0/logout",
		"jwks_uri":                      base + "/discovery/v2.0/keys",
		// The issuer is Entra's, whatever host served the document: tokens are validated
		// against it, and MSAL accepts it because login.microsoftonline.com is a trusted host.
		"issuer": "https://login.microsoftonline.com/" + tenantID + "/v2.0",
	} {
		if d[k] != want {
			t.Errorf("%s = %v, want %s", k, d[k], want)
		}
	}
	// The fields of Entra's v2.0 tenant document, in Entra's order.
	wantKeys(t, d, "token_endpoint", "token_endpoint_auth_methods_supported", "jwks_uri", "response_modes_supported",
		"subject_types_supported", "id_token_signing_alg_values_supported", "response_types_supported", "scopes_supported",
		"issuer", "request_uri_parameter_supported", "userinfo_endpoint", "authorization_endpoint",
		"device_authorization_endpoint", "http_logout_supported", "frontchannel_logout_supported", "end_session_endpoint",
		"claims_supported", "kerberos_endpoint", "tenant_region_scope", "cloud_instance_name", "cloud_graph_host_name",
		"msgraph_host", "rbac_url")
	if !strings.HasPrefix(string(a.body), `{"token_endpoint":`) {
		t.Errorf("the document does not start with token_endpoint as Entra's does: %.40s", a.body)
	}
	// The tenant segment is matched case-insensitively, as for the token endpoint.
	if a := send(t, s, call{method: http.MethodGet, path: "/" + strings.ToUpper(tenantID) + "/v2.0/.well-known/openid-configuration"}); a.status != http.StatusOK {
		t.Errorf("upper-case tenant: %d", a.status)
	}
}
