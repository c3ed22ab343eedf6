package idp

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Entra error codes of client assertions (certificates and federated credentials).
const (
	AADSTSNoMatchingFederatedRecord = 70021  // invalid_request, 400 (no federated credential matches at all)
	AADSTSFederatedIssuerMismatch   = 700211 // invalid_client, 401
	AADSTSFederatedAudienceMismatch = 700212 // invalid_client, 401
	AADSTSFederatedSubjectMismatch  = 700213 // invalid_client, 401
	AADSTSAssertionClientMismatch   = 700021 // invalid_client, 401 (iss is not client_id)
	AADSTSAssertionAudience         = 700023 // invalid_client, 401 (aud is not the token endpoint)
	AADSTSAssertionTimeRange        = 700024 // invalid_client, 401
	AADSTSAssertionSignature        = 700027 // invalid_client, 401 (key not found, or signature invalid)
	AADSTSAssertionSubjectNotIssuer = 50048  // invalid_client, 401
	AADSTSInvalidJWT                = 50027  // invalid_request, 400
)

// MaxClientAssertionLifetime is the longest validity (exp − nbf) the fake accepts of a
// certificate client assertion. Entra's documented guidance is a short-lived assertion; MSAL signs
// ten minutes. The fake enforces that bound so a client that signs day-long assertions is caught.
const MaxClientAssertionLifetime = 10 * time.Minute

// certificateAlgs are the algorithms Entra accepts for certificate assertions: PS256, which its
// documentation shows, and RS256, which older clients use. Tests assert the alg sent.
var certificateAlgs = []string{"PS256", "RS256"}

const fedDocs = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"

// azureFederatedCredential is a federated identity credential on an app registration.
type azureFederatedCredential struct {
	issuer, subject, audience string
	keys                      *keySet
}

// azureCertificate is a certificate uploaded to an app registration, found by its SHA-256
// thumbprint (the assertion's x5t#S256 header).
type azureCertificate struct {
	thumbprint string
	cert       *x509.Certificate
}

// addAzureAppLocked returns the app, creating it (without a client secret) when needed.
func (s *Server) addAzureAppLocked(tenantID, clientID string) *azureApp {
	t := s.addTenantLocked(tenantID)
	key := strings.ToLower(clientID)
	app, ok := t.apps[key]
	if !ok {
		app = &azureApp{clientID: clientID, objectID: newUUID(), noSecret: true}
		t.apps[key] = app
	}
	return app
}

// AddAzureFederatedCredential registers a federated identity credential on an app, creating the
// tenant and the app (with no client secret) if needed. As in Entra, the issuer, subject and
// audience are matched exactly and case-sensitively. jwks stands for the keys Entra would fetch
// from the issuer's discovery document; the fake never fetches them.
func (s *Server) AddAzureFederatedCredential(tenantID, clientID, issuer, subject, audience string, jwks []byte) error {
	keys, err := parseJWKS(jwks)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	app := s.addAzureAppLocked(tenantID, clientID)
	app.federated = append(app.federated, azureFederatedCredential{issuer: issuer, subject: subject, audience: audience, keys: keys})
	return nil
}

// AddAzureCertificate uploads a certificate (PEM; the first CERTIFICATE block) to an app, creating
// the tenant and the app (with no client secret) if needed.
func (s *Server) AddAzureCertificate(tenantID, clientID string, certPEM []byte) error {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return errors.New("idp: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("idp: parse certificate: %w", err)
	}
	sum := sha256.Sum256(cert.Raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	app := s.addAzureAppLocked(tenantID, clientID)
	app.certs = append(app.certs, azureCertificate{thumbprint: base64.RawURLEncoding.EncodeToString(sum[:]), cert: cert})
	return nil
}

// verifyClientAssertion checks a client_assertion (RFC 7523) the way Entra does for the
// client-credentials grant, and answers the error itself when it fails. An assertion with an
// x5t#S256 (or x5t) header is a certificate assertion; any other is a federated token (workload
// identity federation).
func (s *Server) verifyClientAssertion(w http.ResponseWriter, r *http.Request, app azureApp, rec *Request) bool {
	switch t := r.PostForm.Get("client_assertion_type"); t {
	case ClientAssertionTypeJWTBearer:
	case "":
		s.writeMissingParameter(w, r, "client_assertion_type")
		return false
	default:
		s.writeEntraError(w, r, http.StatusBadRequest, "invalid_request", AADSTSMalformedRequest,
			fmt.Sprintf("Invalid request. The client_assertion_type '%s' is not supported.", t))
		return false
	}
	raw := r.PostForm.Get("client_assertion")
	if raw == "" {
		s.writeMissingParameter(w, r, "client_assertion")
		return false
	}
	header, claims, ok := peekJWT(raw)
	if !ok {
		s.writeEntraError(w, r, http.StatusBadRequest, "invalid_request", AADSTSInvalidJWT, "JWT token is invalid or malformed.")
		return false
	}
	recordAssertion(rec, header, claims)
	_, hasS256 := header["x5t#S256"]
	_, hasX5t := header["x5t"]
	if hasS256 || hasX5t {
		return s.verifyCertificateAssertion(w, r, app, raw, header, rec)
	}
	return s.verifyFederatedAssertion(w, r, app, raw, claims, rec)
}

func (s *Server) verifyCertificateAssertion(w http.ResponseWriter, r *http.Request, app azureApp, raw string, header map[string]any, rec *Request) bool {
	thumb, _ := header["x5t#S256"].(string)
	if thumb == "" {
		thumb, _ = header["x5t"].(string)
	}
	var cert *x509.Certificate
	for _, c := range app.certs {
		if c.thumbprint == thumb {
			cert = c.cert
		}
	}
	if cert == nil {
		s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", AADSTSAssertionSignature,
			fmt.Sprintf("Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '%s', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments to determine the corresponding service endpoint and https://docs.microsoft.com/en-us/graph/api/application-get?view=graph-rest-1.0&tabs=http to build a query request URL, such as 'https://graph.microsoft.com/beta/applications/%s']", thumb, app.clientID, app.clientID))
		return false
	}
	now := s.clock()
	found := fmt.Sprintf("Found key 'Start=%s, End=%s'", cert.NotBefore.UTC().Format("01/02/2006 15:04:05"), cert.NotAfter.UTC().Format("01/02/2006 15:04:05"))
	if now.After(cert.NotAfter) {
		s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", AADSTSAssertionSignature,
			fmt.Sprintf("Client assertion contains an invalid signature. [Reason - The key used is expired., Thumbprint of key used by client: '%s', %s]", thumb, found))
		return false
	}
	mc, err := verifyJWT(raw, func(map[string]any) (any, error) { return cert.PublicKey, nil }, certificateAlgs, s.clock)
	switch err {
	case nil:
	case errJWTTime:
		s.writeTimeRange(w, r, now, mc)
		return false
	case errJWTMalformed:
		s.writeEntraError(w, r, http.StatusBadRequest, "invalid_request", AADSTSInvalidJWT, "JWT token is invalid or malformed.")
		return false
	default:
		s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", AADSTSAssertionSignature,
			fmt.Sprintf("Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '%s', %s]", thumb, found))
		return false
	}
	start := claimTime(mc, "nbf")
	if start.IsZero() {
		start = claimTime(mc, "iat")
	}
	if start.IsZero() || claimTime(mc, "exp").Sub(start) > MaxClientAssertionLifetime {
		s.writeTimeRange(w, r, now, mc)
		return false
	}
	if claimString(mc, "jti") == "" {
		s.writeEntraError(w, r, http.StatusBadRequest, "invalid_request", AADSTSInvalidJWT, "JWT token is invalid or malformed.")
		return false
	}
	endpoint := "https://" + r.Host + r.URL.Path
	if aud := claimAudience(mc); len(aud) != 1 || aud[0] != endpoint {
		s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", AADSTSAssertionAudience,
			"Client assertion audience claim does not match Realm issuer. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .")
		return false
	}
	if claimString(mc, "iss") != app.clientID {
		s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", AADSTSAssertionClientMismatch,
			"Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .")
		return false
	}
	if claimString(mc, "sub") != claimString(mc, "iss") {
		s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", AADSTSAssertionSubjectNotIssuer,
			"Subject must match Issuer claim in the client assertion.")
		return false
	}
	rec.AssertionVerified = true
	return true
}

func (s *Server) verifyFederatedAssertion(w http.ResponseWriter, r *http.Request, app azureApp, raw string, claims jwt.MapClaims, rec *Request) bool {
	iss, sub, aud := claimString(claims, "iss"), claimString(claims, "sub"), claimAudience(claims)
	if len(app.federated) == 0 {
		s.writeEntraError(w, r, http.StatusBadRequest, "invalid_request", AADSTSNoMatchingFederatedRecord,
			fmt.Sprintf("No matching federated identity record found for presented assertion. Assertion Issuer: '%s'. Assertion Subject: '%s'. Assertion Audience: '%s'. %s", iss, sub, strings.Join(aud, ","), fedDocs))
		return false
	}
	var byIssuer []azureFederatedCredential
	for _, f := range app.federated {
		if f.issuer == iss {
			byIssuer = append(byIssuer, f)
		}
	}
	if len(byIssuer) == 0 {
		s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", AADSTSFederatedIssuerMismatch,
			fmt.Sprintf("No matching federated identity record found for presented assertion issuer '%s'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. %s", iss, fedDocs))
		return false
	}
	now := s.clock()
	mc, err := verifyJWT(raw, func(h map[string]any) (any, error) {
		kid, _ := h["kid"].(string)
		var keys jwt.VerificationKeySet
		for _, f := range byIssuer {
			keys.Keys = append(keys.Keys, f.keys.verificationKeys(kid).Keys...)
		}
		return keys, nil
	}, federationAlgs, s.clock)
	switch err {
	case nil:
	case errJWTTime:
		s.writeTimeRange(w, r, now, mc)
		return false
	case errJWTMalformed:
		s.writeEntraError(w, r, http.StatusBadRequest, "invalid_request", AADSTSInvalidJWT, "JWT token is invalid or malformed.")
		return false
	default:
		s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", AADSTSAssertionSignature,
			"Client assertion failed signature validation. The signing key was not found in the issuer's published keys.")
		return false
	}
	var byAudience []azureFederatedCredential
	for _, f := range byIssuer {
		if slices.Contains(aud, f.audience) {
			byAudience = append(byAudience, f)
		}
	}
	if len(byAudience) == 0 {
		s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", AADSTSFederatedAudienceMismatch,
			fmt.Sprintf("No matching federated identity record found for presented assertion audience '%s'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. %s", strings.Join(aud, ","), fedDocs))
		return false
	}
	if !slices.ContainsFunc(byAudience, func(f azureFederatedCredential) bool { return f.subject == sub }) {
		s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", AADSTSFederatedSubjectMismatch,
			fmt.Sprintf("No matching federated identity record found for presented assertion subject '%s'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. %s", sub, fedDocs))
		return false
	}
	rec.AssertionVerified = true
	return true
}

// writeTimeRange answers AADSTS700024 in Entra's words.
func (s *Server) writeTimeRange(w http.ResponseWriter, r *http.Request, now time.Time, mc jwt.MapClaims) {
	const layout = "2006-01-02T15:04:05.0000000Z"
	from := claimTime(mc, "nbf")
	if from.IsZero() {
		from = time.Unix(0, 0)
	}
	s.writeEntraError(w, r, http.StatusUnauthorized, "invalid_client", AADSTSAssertionTimeRange,
		fmt.Sprintf("Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
			now.UTC().Format(layout), from.UTC().Format(layout), claimTime(mc, "exp").UTC().Format(layout)))
}
