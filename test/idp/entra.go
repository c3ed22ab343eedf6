package idp

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// entraTokenResponse is the 200 body of the Entra v2.0 token endpoint for client credentials,
// fields in Entra's order. There is no refresh_token and no scope in this answer.
type entraTokenResponse struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    *int64 `json:"expires_in,omitempty"`
	ExtExpiresIn *int64 `json:"ext_expires_in,omitempty"`
	AccessToken  string `json:"access_token"`
}

// entraError is Entra's error body, fields in Entra's order. error_description always starts
// with "AADSTS<code>: " and ends with "\r\nTrace ID: …\r\nCorrelation ID: …\r\nTimestamp: …" —
// a multi-line string, which is why a client must never paste it into a one-line condition
// message as-is.
type entraError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorCodes       []int  `json:"error_codes"`
	Timestamp        string `json:"timestamp"`
	TraceID          string `json:"trace_id"`
	CorrelationID    string `json:"correlation_id"`
	ErrorURI         string `json:"error_uri"`
}

// entraTimestamp is the layout of Entra's "timestamp" field, e.g. "2026-11-28 18:00:00Z".
const entraTimestamp = "2006-01-02 15:04:05Z"

// Entra error codes the fake produces (AADSTS<code>).
const (
	AADSTSServerError             = 50000   // server_error
	AADSTSTenantNotFound          = 90002   // invalid_request, 400
	AADSTSThrottled               = 90055   // temporarily_unavailable (TenantThrottlingError)
	AADSTSUnsupportedGrantType    = 70003   // unsupported_grant_type, 400
	AADSTSInvalidScopeParam       = 70011   // invalid_scope, 400 (more than one scope)
	AADSTSMissingParameter        = 900144  // invalid_request, 400
	AADSTSPostOnly                = 900561  // invalid_request, 400 (GET on the token endpoint)
	AADSTSMalformedRequest        = 9002313 // invalid_request, 400
	AADSTSAppNotFound             = 700016  // unauthorized_client, 400
	AADSTSInvalidSecret           = 7000215 // invalid_client, 401
	AADSTSMissingCredential       = 7000216 // invalid_client, 401
	AADSTSSecretExpired           = 7000222 // invalid_client, 401
	AADSTSResourceNotFound        = 500011  // invalid_resource, 400
	AADSTSScopeNeedsDefaultSuffix = 1002012 // invalid_scope, 400
	AADSTSAccessBlocked           = 53003   // access_denied (Conditional Access)
)

// entraToken answers POST /{tenant}/oauth2/v2.0/token.
//
// Order of checks. Entra does not document it; this order follows what is commonly observed
// (the tenant is resolved from the URL before the request is read; the request is validated
// before the client is authenticated; the resource is resolved last):
// tenant (90002), method (900561), grant_type (900144/70003), client_id (900144),
// scope (900144/1002012/70011, MSAL's OIDC scopes set aside: msalOIDCScopes), app (700016),
// then either the client assertion
// (entra_assertion.go: 900144, 50027, 70021, 700211-700213, 700027, 700024, 700023, 700021,
// 50048) or the secret (7000216/7000222/7000215), resource (500011).
func (s *Server) entraToken(w http.ResponseWriter, r *http.Request, tenantSeg string, c credentials, rec *Request) {
	tenantID, tenantOK, app, appOK := s.lookupAzureApp(tenantSeg, c.clientID)
	if !tenantOK {
		s.writeTenantNotFound(w, r, tenantSeg)
		return
	}
	if r.Method != http.MethodPost {
		s.writeEntraError(w, r, http.StatusBadRequest, "invalid_request", AADSTSPostOnly,
			fmt.Sprintf("The endpoint only accepts POST, OPTIONS requests. Received a %s request.", r.Method))
		return
	}
	switch grant := r.PostForm.Get("grant_type"); grant {
	case "client_credentials":
	case "":
		s.writeMissingParameter(w, r, "grant_type")
		return
	default:
		s.writeEntraError(w, r, http.StatusBadRequest, "unsupported_grant_type", AADSTSUnsupportedGrantType,
			fmt.Sprintf("The app requested an unsupported grant type '%s'.", grant))
		return
	}
	if c.clientID == "" {
		s.writeMissingParameter(w, r, "client_id")
		return
	}

	scope := strings.Join(strings.Fields(r.PostForm.Get("scope")), " ")
	if scope == "" {
		s.writeMissingParameter(w, r, "scope")
		return
	}
	resources := clientCredentialsResources(scope)
	if len(resources) == 0 || slices.ContainsFunc(resources, func(sc string) bool { return !strings.HasSuffix(strings.ToLower(sc), "/.default") }) {
		s.writeEntraError(w, r, http.StatusBadRequest, "invalid_scope", AADSTSScopeNeedsDefaultSuffix,
			fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", scope))
		return
	}
	if len(resources) > 1 {
		s.writeEntraError(w, r, http.StatusBadRequest, "invalid_scope", AADSTSInvalidScopeParam,
			fmt.Sprintf("The provided value for the input parameter 'scope' is not valid. The scope %s is not valid.", scope))
		return
	}

	if !appOK {
		s.writeEntraError(w, r, http.StatusBadRequest, "unauthorized_client", AADSTSAppNotFound,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", c.clientID, tenantSeg))
		return
	}
	// appidacr of the issued token: "1" for a client secret, "2" for a certificate or assertion.
	acr := "1"
	if r.PostForm.Has("client_assertion") || r.PostForm.Has("client_assertion_type") {
		if !s.verifyClientAssertion(w, r, app, rec) {
			return
		}
		acr = "2"
	} else if !s.verifyClientSecret(w, r, c, app) {
		return
	}

	resource := resources[0][:len(resources[0])-len("/.default")]
	if !isAzureDatabricksResource(resource) {
		s.writeEntraError(w, r, http.StatusBadRequest, "invalid_resource", AADSTSResourceNotFound,
			fmt.Sprintf("The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.", resource, tenantSeg))
		return
	}

	lifetime, omit := s.tokenSettings()
	token, err := s.mintEntra(tenantID, app, acr, lifetime)
	if err != nil {
		s.writeEntraError(w, r, http.StatusInternalServerError, "server_error", AADSTSServerError,
			"There was an error issuing a token or an issue with our sign-in service.")
		return
	}
	rec.IssuedToken = token
	resp := entraTokenResponse{TokenType: "Bearer", AccessToken: token}
	if !omit {
		secs := int64(lifetime.Seconds())
		resp.ExpiresIn, resp.ExtExpiresIn = &secs, &secs
	}
	s.setEntraHeaders(w, r, newUUID())
	writeJSON(w, "application/json; charset=utf-8", http.StatusOK, resp)
}

// msalOIDCScopes are the OpenID Connect scopes MSAL appends to the scopes of every
// confidential-client request, client credentials included ("openid offline_access profile":
// AppendDefaultScopes in microsoft-authentication-library-for-go, and likewise MSAL Java and the
// Azure Identity libraries built on them). Entra accepts them next to one resource's /.default and
// issues an app-only token for that resource: every azidentity ClientSecretCredential,
// ClientCertificateCredential and WorkloadIdentityCredential request has this shape. Without a
// resource scope they are refused with AADSTS1002012 quoting the whole scope string (the answer
// MSAL Go's maintainers quote in microsoft-authentication-library-for-go issue #304 and next to
// scopeError in apps/internal/oauth/oauth.go); AADSTS70011 texts quote the whole string as well
// (e.g. "The scope https://…/tasks/read https://…/tasks/write offline_access openid profile is
// not valid." in Azure-Samples/active-directory-b2c-dotnet-webapp-and-webapi issue #2).
//
// Entra documents a fourth OIDC scope, email; no client sends it with client credentials and
// Entra's answer to it there has not been observed, so the fake refuses it like any other scope
// without /.default (strict where unknown, so that an unusual client is noticed).
var msalOIDCScopes = map[string]bool{"openid": true, "offline_access": true, "profile": true}

// clientCredentialsResources returns the scopes of a client-credentials request other than the
// OIDC scopes MSAL adds: the resource scopes, of which exactly one, ending in /.default, is valid.
func clientCredentialsResources(scope string) []string {
	var out []string
	for _, sc := range strings.Fields(scope) {
		if !msalOIDCScopes[sc] {
			out = append(out, sc)
		}
	}
	return out
}

// verifyClientSecret authenticates a client secret and answers the error itself when it fails.
func (s *Server) verifyClientSecret(w http.ResponseWriter, r *http.Request, c credentials, app azureApp) bool {
	if c.secret == "" {
		s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", AADSTSMissingCredential,
			"'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.")
		return false
	}
	if app.noSecret || !secretMatches(app.secretHash, c.secret) {
		s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", AADSTSInvalidSecret,
			fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", c.clientID))
		return false
	}
	if app.expired {
		s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", AADSTSSecretExpired,
			fmt.Sprintf("The provided client secret keys for app '%s' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.", c.clientID))
		return false
	}
	return true
}

// isAzureDatabricksResource accepts the AzureDatabricks application ID and its api:// app ID
// URI form, case-insensitively (GUIDs are case-insensitive in Entra).
func isAzureDatabricksResource(resource string) bool {
	r := strings.ToLower(resource)
	return r == AzureDatabricksResourceID || r == "api://"+AzureDatabricksResourceID
}

func (s *Server) writeTenantNotFound(w http.ResponseWriter, r *http.Request, tenantSeg string) {
	s.writeEntraError(w, r, http.StatusBadRequest, "invalid_request", AADSTSTenantNotFound,
		fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.", tenantSeg))
}

func (s *Server) writeMissingParameter(w http.ResponseWriter, r *http.Request, name string) {
	s.writeEntraError(w, r, http.StatusBadRequest, "invalid_request", AADSTSMissingParameter,
		fmt.Sprintf("The request body must contain the following parameter: '%s'.", name))
}

// writeEntraError writes an error exactly as login.microsoftonline.com does.
func (s *Server) writeEntraError(w http.ResponseWriter, r *http.Request, status int, code string, aadsts int, message string) {
	ts := s.clock().UTC().Format(entraTimestamp)
	traceID := newUUID()
	correlationID := correlationIDFor(r)
	s.setEntraHeaders(w, r, traceID)
	writeJSON(w, "application/json; charset=utf-8", status, entraError{
		Error: code,
		ErrorDescription: fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
			aadsts, message, traceID, correlationID, ts),
		ErrorCodes:    []int{aadsts},
		Timestamp:     ts,
		TraceID:       traceID,
		CorrelationID: correlationID,
		ErrorURI:      fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", aadsts),
	})
}

// setEntraHeaders sets the headers Entra puts on every token answer: no caching, the trace ID as
// x-ms-request-id, and the caller's client-request-id echoed back.
func (s *Server) setEntraHeaders(w http.ResponseWriter, r *http.Request, traceID string) {
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.Header().Set("Pragma", "no-cache")
	w.Header().Set("X-Ms-Request-Id", traceID)
	if id := r.Header.Get("client-request-id"); uuidRE.MatchString(id) {
		w.Header().Set("Client-Request-Id", id)
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// correlationIDFor uses the client-request-id header (as MSAL sends it) when it is a GUID, as
// Entra does, so a client can correlate its request with the error; otherwise a fresh one.
func correlationIDFor(r *http.Request) string {
	if id := r.Header.Get("client-request-id"); uuidRE.MatchString(id) {
		return strings.ToLower(id)
	}
	return newUUID()
}
