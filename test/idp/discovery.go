package idp

import (
	"net/http"
)

// serveJWKS answers the key-set endpoints, so a fake workspace (or any JWT library) can verify
// issued tokens over HTTP as a real resource server would.
func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request, tenantSeg string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeHTML(w, http.StatusMethodNotAllowed)
		return
	}
	if tenantSeg != "" && !s.tenantExists(tenantSeg) {
		s.writeTenantNotFound(w, r, tenantSeg)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(s.signer.jwks)
}

// serveDiscovery answers the metadata documents: Databricks SDKs look up
// {host}/oidc/.well-known/oauth-authorization-server; Entra publishes
// {authority}/{tenant}/v2.0/.well-known/openid-configuration, which MSAL reads before its first
// token request.
func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request, tenantSeg string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeHTML(w, http.StatusMethodNotAllowed)
		return
	}
	base := "https://" + r.Host
	if tenantSeg == "" {
		writeJSON(w, "application/json", http.StatusOK, map[string]any{
			"issuer":                                base + "/oidc",
			"authorization_endpoint":                base + "/oidc/v1/authorize",
			"token_endpoint":                        base + "/oidc/v1/token",
			"jwks_uri":                              base + "/oidc/jwks.json",
			"grant_types_supported":                 []string{"client_credentials", "authorization_code", "refresh_token"},
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
			"scopes_supported":                      []string{"all-apis", "sql", "offline_access", "openid", "profile", "email"},
		})
		return
	}
	tenantID, ok, _, _ := s.lookupAzureApp(tenantSeg, "")
	if !ok {
		s.writeTenantNotFound(w, r, tenantSeg)
		return
	}
	writeJSON(w, "application/json; charset=utf-8", http.StatusOK, newEntraDiscovery(base+"/"+tenantSeg, tenantID))
}

// entraDiscovery is Entra's v2.0 tenant discovery document, every field in Entra's order (as
// login.microsoftonline.com serves it; the panva/wellknown repository keeps a copy of the
// "common" one). A document with fewer fields is not harmless: MSAL Go refuses one without
// authorization_endpoint, token_endpoint or issuer (TenantDiscoveryResponse.Validate in
// apps/internal/oauth/ops/authority), although the client-credentials grant only uses the token
// endpoint.
//
// The endpoints are on the host that served the document, as Entra's are, so that a client
// pointed at the fake stays there; the fake serves only the token endpoint and the keys.
// The issuer is Entra's, https://login.microsoftonline.com/{tenant}/v2.0, whatever the host: it
// is what v2.0 tokens carry, and MSAL accepts it because its host is one of Entra's trusted
// hosts (ValidateIssuerMatchesAuthority). The "cloud" fields are those of the public cloud.
type entraDiscovery struct {
	TokenEndpoint                     string   `json:"token_endpoint"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	JWKSURI                           string   `json:"jwks_uri"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	Issuer                            string   `json:"issuer"`
	RequestURIParameterSupported      bool     `json:"request_uri_parameter_supported"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	DeviceAuthorizationEndpoint       string   `json:"device_authorization_endpoint"`
	HTTPLogoutSupported               bool     `json:"http_logout_supported"`
	FrontchannelLogoutSupported       bool     `json:"frontchannel_logout_supported"`
	EndSessionEndpoint                string   `json:"end_session_endpoint"`
	ClaimsSupported                   []string `json:"claims_supported"`
	KerberosEndpoint                  string   `json:"kerberos_endpoint"`
	TenantRegionScope                 string   `json:"tenant_region_scope"`
	CloudInstanceName                 string   `json:"cloud_instance_name"`
	CloudGraphHostName                string   `json:"cloud_graph_host_name"`
	MSGraphHost                       string   `json:"msgraph_host"`
	RBACURL                           string   `json:"rbac_url"`
}

// newEntraDiscovery fills the document for a tenant; authority is the scheme, host and tenant
// segment the client used, tenantID the tenant's registered ID.
func newEntraDiscovery(authority, tenantID string) entraDiscovery {
	return entraDiscovery{
		TokenEndpoint:                     authority + "/oauth2/v2.0/token",
		TokenEndpointAuthMethodsSupported: []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		JWKSURI:                           authority + "/discovery/v2.0/keys",
		ResponseModesSupported:            []string{"query", "fragment", "form_post"},
		SubjectTypesSupported:             []string{"pairwise"},
		IDTokenSigningAlgValuesSupported:  []string{"RS256"},
		ResponseTypesSupported:            []string{"code", "id_token", "code id_token", "id_token token"},
		ScopesSupported:                   []string{"openid", "profile", "email", "offline_access"},
		Issuer:                            "https://login.microsoftonline.com/" + tenantID + "/v2.0",
		RequestURIParameterSupported:      false,
		UserinfoEndpoint:                  "https://graph.microsoft.com/oidc/userinfo",
		AuthorizationEndpoint:             authority + "/oauth2/v2.0/authorize",
		DeviceAuthorizationEndpoint:       authority + "/oauth2/v2.0/devicecode",
		HTTPLogoutSupported:               true,
		FrontchannelLogoutSupported:       true,
		EndSessionEndpoint:                authority + "/oauth2/v2.0/logout",
		ClaimsSupported: []string{"sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
			"msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver",
			"at_hash", "c_hash", "email"},
		KerberosEndpoint:   authority + "/kerberos",
		TenantRegionScope:  "WW",
		CloudInstanceName:  "microsoftonline.com",
		CloudGraphHostName: "graph.windows.net",
		MSGraphHost:        "graph.microsoft.com",
		RBACURL:            "https://pas.windows.net",
	}
}
