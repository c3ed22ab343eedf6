package idp

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // x5t is defined as a SHA-1 thumbprint (RFC 7515 §4.1.7)
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
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
// thumbprint (the assertion's x5t#S256 header) or its SHA-1 thumbprint (x5t).
type azureCertificate struct {
	sha256 [sha256.Size]byte
	sha1   [sha1.Size]byte
	cert   *x509.Certificate
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
	s.mu.Lock()
	defer s.mu.Unlock()
	app := s.addAzureAppLocked(tenantID, clientID)
	app.certs = append(app.certs, azureCertificate{sha256: sha256.Sum256(cert.Raw), sha1: sha1.Sum(cert.Raw), cert: cert}) //nolint:gosec // x5t is SHA-1 by definition
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
	cert, thumb := findCertificate(app.certs, header)
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

// findCertificate returns the uploaded certificate a certificate assertion names, and the
// thumbprint as Entra quotes it in its errors.
//
// Entra reads the thumbprint header as the bytes of a hash, not as a string. RFC 7515 §4.1.7-8
// defines x5t and x5t#S256 as base64url, and MSAL .NET and the operator send that, but MSAL Go
// sends padded standard base64 (base64.StdEncoding of the SHA-256 in Credential.JWT,
// apps/internal/oauth/ops/accesstokens of microsoft-authentication-library-for-go) and
// authenticates with Entra all the same; Microsoft's own documentation has shown the thumbprint
// both ways (MicrosoftDocs/azure-docs PR #95348 "x5t claim is base64-encoded not
// base64url-encoded", issue #67127 "x5t claim should be base64url"). So the fake decodes either
// alphabet, padded or not. And Entra prints the thumbprint it looked for in upper-case hex
// ("Thumbprint of key used by client: 'C49C25705D60569884EDC91986CEF8A01A495783'" in its
// AADSTS700027/50012 answers), which it can only do after decoding it.
//
// x5t#S256 is matched against SHA-256 thumbprints and, when it is absent, x5t against SHA-1
// ones: the SHA-1 x5t with RS256 is what Entra's certificate-credentials documentation showed
// before PS256/x5t#S256 and what MSAL Java sent until 1.16.2 (AzureAD/microsoft-authentication-
// library-for-java issue #760). When both are present the fake reads x5t#S256 (its choice: not
// observed). A value that is not base64 in either alphabet names no key and is quoted as sent.
func findCertificate(certs []azureCertificate, header map[string]any) (*x509.Certificate, string) {
	presented, sha256Header := header["x5t#S256"].(string)
	if !sha256Header {
		presented, _ = header["x5t"].(string)
	}
	sum, ok := decodeThumbprint(presented)
	if !ok {
		return nil, presented
	}
	for _, c := range certs {
		if (sha256Header && bytes.Equal(sum, c.sha256[:])) || (!sha256Header && bytes.Equal(sum, c.sha1[:])) {
			return c.cert, strings.ToUpper(hex.EncodeToString(sum))
		}
	}
	return nil, strings.ToUpper(hex.EncodeToString(sum))
}

// decodeThumbprint decodes base64 in the URL-safe or the standard alphabet, with or without
// padding; mixing the alphabets is an error.
func decodeThumbprint(s string) ([]byte, bool) {
	trimmed := strings.TrimRight(s, "=")
	if trimmed == "" {
		return nil, false
	}
	if b, err := base64.RawURLEncoding.DecodeString(trimmed); err == nil {
		return b, true
	}
	if b, err := base64.RawStdEncoding.DecodeString(trimmed); err == nil {
		return b, true
	}
	return nil, false
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
