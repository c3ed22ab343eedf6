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
// {authority}/{tenant}/v2.0/.well-known/openid-configuration. Only the fields a client of the
// client-credentials flow might read are included.
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
	writeJSON(w, "application/json; charset=utf-8", http.StatusOK, map[string]any{
		"issuer":                                "https://login.microsoftonline.com/" + tenantID + "/v2.0",
		"token_endpoint":                        base + "/" + tenantSeg + "/oauth2/v2.0/token",
		"jwks_uri":                              base + "/" + tenantSeg + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"tenant_region_scope":                   "WW",
	})
}
