package idp

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Wire constants of RFC 8693 token exchange and RFC 7523 client assertions.
const (
	GrantTypeTokenExchange       = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeJWT                 = "urn:ietf:params:oauth:token-type:jwt"
	ClientAssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// federationAlgs are the signature algorithms accepted on federated tokens: RS256 (most issuers)
// and ES256 (Kubernetes API servers with an EC signing key, envtest's among them).
var federationAlgs = []string{"RS256", "ES256"}

// FederationPolicy is a Databricks OAuth token federation policy: which federated tokens the
// workspace's /oidc/v1/token exchanges (grant_type token-exchange) for a Databricks token.
type FederationPolicy struct {
	// Issuer is the required iss claim, compared exactly.
	Issuer string
	// Audiences are the accepted aud values; the token matches when one of its audiences is
	// listed. Databricks defaults an empty list to the account ID; the fake requires a list.
	Audiences []string
	// Subject is the required sub claim (a service principal policy must set it); empty accepts
	// any subject (an account-wide policy maps the subject to a user or service principal).
	Subject string
	// JWKS is the issuer's key set (jwks_json of the policy), against which the signature is
	// verified. The fake never fetches keys from the issuer.
	JWKS []byte
	// ClientID is the application ID of the service principal the policy belongs to, which the
	// client must send as client_id; "" makes it an account-wide policy, used when no client_id
	// is sent.
	ClientID string
}

type federationPolicy struct {
	FederationPolicy
	keys *keySet
}

// AddFederationPolicy registers a federation policy. A policy whose JWKS cannot be parsed is an
// error, so that a test fails where it configures the fake, not in a confusing exchange.
func (s *Server) AddFederationPolicy(p FederationPolicy) error {
	keys, err := parseJWKS(p.JWKS)
	if err != nil {
		return err
	}
	p.Audiences = slices.Clone(p.Audiences)
	p.JWKS = slices.Clone(p.JWKS)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.federation = append(s.federation, &federationPolicy{FederationPolicy: p, keys: keys})
	return nil
}

// federationPoliciesFor returns the policies an exchange with this client_id may match.
func (s *Server) federationPoliciesFor(clientID string) []*federationPolicy {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*federationPolicy
	for _, p := range s.federation {
		if p.ClientID == clientID {
			out = append(out, p)
		}
	}
	return out
}

// databricksTokenExchange answers POST /oidc/v1/token with grant_type token-exchange
// (Databricks OAuth token federation). There is no client authentication: the subject token is
// the credential, verified against the policies for the client_id sent (account-wide ones when
// none is).
//
// Order of checks: subject_token and its type, scope, JWT syntax, policies for the client,
// issuer, signature (the policy's JWKS), validity period, audience, subject. Databricks does not
// document its error texts for federation; the fake answers 400 invalid_request for a malformed
// request and 400 invalid_grant (RFC 6749 §5.2) for a token no policy accepts, with a description
// that names what did not match, so that a test (and a user) can see which check failed.
func (s *Server) databricksTokenExchange(w http.ResponseWriter, r *http.Request, rec *Request) {
	subjectToken := r.PostForm.Get("subject_token")
	if subjectToken == "" {
		writeDatabricksError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: subject_token")
		return
	}
	switch t := r.PostForm.Get("subject_token_type"); t {
	case TokenTypeJWT:
	case "":
		writeDatabricksError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: subject_token_type")
		return
	default:
		writeDatabricksError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("Unsupported subject_token_type: %s", t))
		return
	}
	scope := strings.Join(strings.Fields(r.PostForm.Get("scope")), " ")
	if scope == "" {
		writeDatabricksError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: scope")
		return
	}
	if !validScopeTokens(scope) {
		writeDatabricksError(w, http.StatusBadRequest, "invalid_scope", "The requested scope is invalid, unknown, or malformed")
		return
	}
	header, claims, ok := peekJWT(subjectToken)
	if !ok {
		writeDatabricksError(w, http.StatusBadRequest, "invalid_request", "The subject_token is not a valid JWT")
		return
	}
	recordAssertion(rec, header, claims)

	clientID := r.PostForm.Get("client_id")
	policies := s.federationPoliciesFor(clientID)
	if len(policies) == 0 {
		if clientID != "" {
			writeDatabricksError(w, http.StatusBadRequest, "invalid_grant", fmt.Sprintf("Token exchange failed: no federation policy is configured for service principal %s", clientID))
		} else {
			writeDatabricksError(w, http.StatusBadRequest, "invalid_grant", "Token exchange failed: no account federation policy is configured")
		}
		return
	}
	iss := claimString(claims, "iss")
	var matching []*federationPolicy
	for _, p := range policies {
		if p.Issuer == iss {
			matching = append(matching, p)
		}
	}
	if len(matching) == 0 {
		writeDatabricksError(w, http.StatusBadRequest, "invalid_grant", fmt.Sprintf("Token exchange failed: the token issuer %q does not match any federation policy", iss))
		return
	}
	// Every policy for this issuer is tried; the answer describes the first one's verdict, which
	// is the most specific when a test registers one policy per issuer.
	var firstErr string
	var matched *federationPolicy
	var verified jwt.MapClaims
	for _, p := range matching {
		msg, mc := s.checkFederatedToken(subjectToken, p)
		if msg == "" {
			matched, verified = p, mc
			break
		}
		if firstErr == "" {
			firstErr = msg
		}
	}
	if matched == nil {
		writeDatabricksError(w, http.StatusBadRequest, "invalid_grant", "Token exchange failed: "+firstErr)
		return
	}
	rec.AssertionVerified = true

	lifetime, omit := s.tokenSettings()
	// The Databricks token lives no longer than the federated token it was exchanged for.
	if left := claimTime(verified, "exp").Sub(s.clock()).Truncate(time.Second); left < lifetime {
		lifetime = max(left, time.Second)
	}
	subject := matched.ClientID
	if subject == "" {
		subject = claimString(verified, "sub") // account-wide: the token's subject is the identity
	}
	token, err := s.mintDatabricks("https://"+r.Host, subject, scope, lifetime)
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

// checkFederatedToken verifies a subject token against one policy and returns "" and the
// verified claims, or a description of the first check that failed.
func (s *Server) checkFederatedToken(raw string, p *federationPolicy) (string, jwt.MapClaims) {
	mc, err := verifyJWT(raw, func(h map[string]any) (any, error) {
		kid, _ := h["kid"].(string)
		return p.keys.verificationKeys(kid), nil
	}, federationAlgs, s.clock)
	switch err {
	case nil:
	case errJWTTime:
		return fmt.Sprintf("the token is expired or not yet valid (exp %s)", claimTime(mc, "exp").UTC().Format(time.RFC3339)), nil
	case errJWTMalformed:
		return "the token is malformed", nil
	default:
		return "the token signature could not be verified with the policy's keys", nil
	}
	aud := claimAudience(mc)
	if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(p.Audiences, a) }) {
		return fmt.Sprintf("the token audience %q does not match the federation policy's audiences", strings.Join(aud, " ")), nil
	}
	if sub := claimString(mc, "sub"); p.Subject != "" && sub != p.Subject {
		return fmt.Sprintf("the token subject %q does not match the federation policy's subject", sub), nil
	}
	return "", mc
}

// recordAssertion notes what an assertion claims to be, before any check: enough for a test to
// see what the client sent, never the token itself.
func recordAssertion(rec *Request, header map[string]any, claims map[string]any) {
	rec.AssertionAlg, _ = header["alg"].(string)
	rec.AssertionThumbprint, _ = header["x5t#S256"].(string)
	rec.AssertionIssuer, _ = claims["iss"].(string)
	rec.AssertionSubject, _ = claims["sub"].(string)
	switch aud := claims["aud"].(type) {
	case string:
		rec.AssertionAudience = []string{aud}
	case []any:
		for _, a := range aud {
			if s, ok := a.(string); ok {
				rec.AssertionAudience = append(rec.AssertionAudience, s)
			}
		}
	}
	if exp, ok := claims["exp"].(float64); ok {
		rec.AssertionExpiresAt = time.Unix(int64(exp), 0)
	}
	if iat, ok := claims["iat"].(float64); ok {
		rec.AssertionIssuedAt = time.Unix(int64(iat), 0)
	}
}
