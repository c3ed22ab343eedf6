package idp

import (
	"fmt"
	"net/http"
	"strings"
)

// databricksTokenResponse is the 200 body of POST {host}/oidc/v1/token, fields in the order
// Databricks sends them.
type databricksTokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	Scope       string `json:"scope"`
	ExpiresIn   *int64 `json:"expires_in,omitempty"`
}

// databricksError is the OAuth error body of the Databricks OIDC endpoint. Unlike plain RFC 6749
// errors it carries an error_id, which support asks for and which the operator quotes in its
// Ready message.
type databricksError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorID          string `json:"error_id"`
}

// databricksToken answers POST /oidc/v1/token.
//
// Order of checks (client authentication first, as RFC 6749 §4.4.2 requires the server to
// authenticate the client before looking at the grant): method, client credentials, grant_type,
// scope. Databricks answers every authentication failure — no credentials, unknown client, wrong
// secret — with the same 401 invalid_client, so the fake does not reveal which one it was either.
func (s *Server) databricksToken(w http.ResponseWriter, r *http.Request, c credentials, rec *Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeDatabricksError(w, http.StatusMethodNotAllowed, "invalid_request", "Only POST is allowed on the token endpoint")
		return
	}
	// Token federation authenticates with the federated token, not client credentials.
	if r.PostForm.Get("grant_type") == GrantTypeTokenExchange {
		s.databricksTokenExchange(w, r, rec)
		return
	}
	s.mu.Lock()
	want, known := s.dbClients[c.clientID]
	s.mu.Unlock()
	if c.clientID == "" || c.secret == "" || !known || !secretMatches(want, c.secret) {
		writeDatabricksError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return
	}
	switch grant := r.PostForm.Get("grant_type"); grant {
	case "client_credentials":
	case "":
		writeDatabricksError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: grant_type")
		return
	default:
		writeDatabricksError(w, http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("Unsupported grant type: %s", grant))
		return
	}
	// Databricks' behaviour for an absent scope is not documented (every client sends
	// all-apis); the fake is strict so that a client that forgets it is caught.
	scope := strings.Join(strings.Fields(r.PostForm.Get("scope")), " ")
	if scope == "" {
		writeDatabricksError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: scope")
		return
	}
	if !validScopeTokens(scope) {
		writeDatabricksError(w, http.StatusBadRequest, "invalid_scope", "The requested scope is invalid, unknown, or malformed")
		return
	}

	lifetime, omit := s.tokenSettings()
	// The token's issuer and audience are the workspace host as the client addressed it, like a
	// workspace that knows its own name (URL() when the client uses it).
	token, err := s.mintDatabricks("https://"+r.Host, c.clientID, scope, lifetime)
	if err != nil {
		writeDatabricksError(w, http.StatusInternalServerError, "server_error", "Failed to issue token")
		return
	}
	rec.IssuedToken = token
	resp := databricksTokenResponse{AccessToken: token, TokenType: "Bearer", Scope: scope}
	if !omit {
		secs := int64(lifetime.Seconds())
		resp.ExpiresIn = &secs
	}
	setNoStore(w)
	writeJSON(w, "application/json", http.StatusOK, resp)
}

func writeDatabricksError(w http.ResponseWriter, status int, code, description string) {
	setNoStore(w)
	writeJSON(w, "application/json", status, databricksError{Error: code, ErrorDescription: description, ErrorID: newUUID()})
}

// validScopeTokens checks RFC 6749 §3.3 scope-token syntax for each space-separated token.
func validScopeTokens(scope string) bool {
	for _, tok := range strings.Split(scope, " ") {
		for i := 0; i < len(tok); i++ {
			ch := tok[i]
			if ch < 0x21 || ch == 0x22 || ch == 0x5c || ch > 0x7e {
				return false
			}
		}
	}
	return true
}

// setNoStore sets the caching headers RFC 6749 §5.1 requires on token responses.
func setNoStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

func writeJSON(w http.ResponseWriter, contentType string, status int, v any) {
	body, err := marshalJSON(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
