// Package token obtains OAuth access tokens for DatabricksCredentials: one client-credentials
// exchange per call, the wire shape chosen by the credential's identity block, with provider errors
// classified into the credential's Ready reasons. It never logs, stores or returns secret material
// in errors.
package token

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	redactpkg "github.com/dbtoken/databricks-token-operator/internal/redact"
)

// Kind names the identity block a Request was built from.
type Kind string

const (
	KindAzure      Kind = "azure"
	KindDatabricks Kind = "databricks"
	KindOAuth2     Kind = "oauth2"
	KindFederation Kind = "federation"
)

// Default scopes per identity block (DESIGN.md, "Identity blocks and the wire protocol").
const (
	// AzureDatabricksScope is the Azure Databricks first-party application's resource ID with the
	// /.default suffix that the client-credentials grant requires.
	AzureDatabricksScope = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"
	// DatabricksAllAPIsScope grants the token every workspace API the service principal may use.
	DatabricksAllAPIsScope = "all-apis"
	// DefaultAuthorityHost is the public-cloud Entra ID login endpoint.
	DefaultAuthorityHost = "https://login.microsoftonline.com"
)

// Wire constants of the exchanges that need no client secret.
const (
	// GrantTypeTokenExchange is RFC 8693's grant, which Databricks OAuth token federation uses.
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	// TokenTypeJWT is the subject_token_type of a ServiceAccount token (RFC 8693 §3).
	TokenTypeJWT = "urn:ietf:params:oauth:token-type:jwt"
	// ClientAssertionTypeJWTBearer is the client_assertion_type of RFC 7523 §2.2, which Entra
	// expects for certificate assertions and federated ServiceAccount tokens alike.
	ClientAssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// AzureTokenExchangeAudience is the audience Entra federated identity credentials expect.
	AzureTokenExchangeAudience = "api://AzureADTokenExchange"
	// AzureServiceAccountTokenSeconds is the lifetime of the ServiceAccount tokens sent to Entra:
	// the TokenRequest API's minimum. Entra's token lifetime does not follow the assertion's, and
	// the assertion is used once, at once.
	AzureServiceAccountTokenSeconds = 600
	// DefaultFederationTokenSeconds is spec.federation.expirationSeconds' default.
	DefaultFederationTokenSeconds = 3600
)

// ServiceAccountToken describes the Kubernetes ServiceAccount token that proves a client's
// identity: whose token, for which audience, for how long.
type ServiceAccountToken struct {
	Namespace         string
	Name              string
	Audience          string
	ExpirationSeconds int64
}

// Subject is the token's sub claim as the API server writes it; federation policies and Entra
// federated credentials match on it.
func (s ServiceAccountToken) Subject() string {
	return "system:serviceaccount:" + s.Namespace + ":" + s.Name
}

// SubjectTokenFunc requests a token for a ServiceAccount (the TokenRequest API). The provider
// calls it only when it performs an exchange, after the token endpoint passed the host
// allow-list, so a token is minted only to be sent at once to an allowed host. Failures should be
// *Error values with the Ready reason to report.
type SubjectTokenFunc func(ctx context.Context, sa ServiceAccountToken) (string, error)

// ClientCertificate is a certificate and its RSA private key, PEM-encoded as in a
// kubernetes.io/tls Secret, that sign Entra client assertions.
type ClientCertificate struct {
	CertPEM []byte
	KeyPEM  []byte `json:"-"`
}

// String keeps %v from printing the private key.
func (c ClientCertificate) String() string { return "client certificate (key withheld)" }

// GoString keeps %#v from printing the private key.
func (c ClientCertificate) GoString() string { return c.String() }

// LogValue keeps slog from printing the private key.
func (c ClientCertificate) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Request is everything one token exchange needs. Its Hash is what the target Secret's
// inputs-hash annotation records, so a change of any field mints a new token.
type Request struct {
	Kind     Kind
	TokenURL string
	ClientID string
	// ClientSecret is never encoded: a Request passed to a JSON-encoding logger (zap.Any,
	// json.Marshal) shows everything but the secret.
	ClientSecret string `json:"-"`
	Scopes       []string
	// SendInHeader sends the client credentials as HTTP Basic authentication; otherwise they go
	// in the form body.
	SendInHeader bool
	// CABundle is extra PEM roots to trust for TokenURL, on top of the system roots.
	CABundle []byte

	// ServiceAccount, for the federation block and azure.workloadIdentity, is the ServiceAccount
	// whose token is exchanged (federation) or sent as the client assertion (Entra). The token
	// itself changes with every request and is never part of the Request or its Hash.
	ServiceAccount *ServiceAccountToken
	// SubjectToken mints the ServiceAccount token; required when ServiceAccount is set.
	SubjectToken SubjectTokenFunc `json:"-"`
	// ClientCertificate, for azure.clientCertificateRef, signs a fresh client assertion for every
	// exchange.
	ClientCertificate *ClientCertificate

	// assertion is the ServiceAccount token or signed assertion of the exchange in progress, set
	// by the provider only so that error texts can be redacted of it.
	assertion string
}

// Inputs is what the controller read from the cluster for a spec.
type Inputs struct {
	// ClientID and ClientSecret come from a client-credentials Secret; blocks without one take
	// the client ID from the spec.
	ClientID     string
	ClientSecret string `json:"-"`
	CABundle     []byte
	// Namespace is the credential's namespace: where its ServiceAccount lives.
	Namespace    string
	SubjectToken SubjectTokenFunc `json:"-"`
	// CertificatePEM and PrivateKeyPEM are tls.crt and tls.key of the client-certificate Secret.
	CertificatePEM []byte
	PrivateKeyPEM  []byte `json:"-"`
}

// String describes the request without its secret, for logs.
func (r Request) String() string {
	s := fmt.Sprintf("%s client %q at %s", r.Kind, r.ClientID, r.TokenURL)
	switch {
	case r.ServiceAccount != nil:
		s += fmt.Sprintf(" with ServiceAccount %s/%s", r.ServiceAccount.Namespace, r.ServiceAccount.Name)
	case r.ClientCertificate != nil:
		s += " with a client certificate"
	}
	return s
}

// secrets are the strings error texts must never contain, in any encoding: the client secret,
// the client ID and secret as HTTP Basic carries them, and the assertion in flight.
func (r Request) secrets() []string {
	return append([]string{r.ClientSecret, r.assertion}, redactpkg.BasicCredentials(r.ClientID, r.ClientSecret)...)
}

// usesAssertion reports whether the client proves its identity with a JWT rather than a client
// secret: a ServiceAccount token or a certificate-signed assertion.
func (r Request) usesAssertion() bool {
	return r.ServiceAccount != nil || r.ClientCertificate != nil
}

// GoString keeps %#v from printing the client secret.
func (r Request) GoString() string { return "token.Request{" + r.String() + "}" }

// LogValue keeps slog (whose JSON handler would otherwise marshal every field) from logging the
// client secret.
func (r Request) LogValue() slog.Value { return slog.StringValue(r.String()) }

// NewRequest derives the token request for spec from the client credentials and optional CA
// bundle read from the cluster. Token endpoints come from the spec, never from discovery.
func NewRequest(spec *v1alpha1.DatabricksCredentialSpec, clientID, clientSecret string, caBundle []byte) (Request, error) {
	return NewRequestFromInputs(spec, Inputs{ClientID: clientID, ClientSecret: clientSecret, CABundle: caBundle})
}

// NewRequestFromInputs derives the token request for spec from what the controller read from
// the cluster. For blocks without a client secret, the client ID comes from the spec and the
// certificate is checked here (PEM, RSA, key matches certificate), so that a bad Secret is
// reported before any exchange.
func NewRequestFromInputs(spec *v1alpha1.DatabricksCredentialSpec, in Inputs) (Request, error) {
	r := Request{ClientID: in.ClientID, ClientSecret: in.ClientSecret, CABundle: in.CABundle, Scopes: spec.Scopes}
	var defaultScopes []string
	// The API server's CEL rule enforces exactly one block; an older CRD without it must not make
	// the operator pick one silently.
	if blocks := countTrue(spec.Databricks != nil, spec.Azure != nil, spec.OAuth2 != nil, spec.Federation != nil); blocks > 1 {
		return Request{}, &Error{Reason: v1alpha1.ReasonInvalidSpec, Message: fmt.Sprintf("%d identity blocks are set", blocks),
			Hint: "set exactly one of spec.azure, spec.databricks, spec.oauth2 or spec.federation"}
	}
	switch {
	case spec.Databricks != nil:
		r.Kind = KindDatabricks
		r.TokenURL = strings.TrimRight(spec.Host, "/") + "/oidc/v1/token"
		r.SendInHeader = true
		defaultScopes = []string{DatabricksAllAPIsScope}
	case spec.Azure != nil:
		r.Kind = KindAzure
		authority := spec.Azure.AuthorityHost
		if authority == "" {
			authority = DefaultAuthorityHost
		}
		r.TokenURL = strings.TrimRight(authority, "/") + "/" + url.PathEscape(spec.Azure.TenantID) + "/oauth2/v2.0/token"
		defaultScopes = []string{AzureDatabricksScope}
		if err := r.azureCredential(spec.Azure, in); err != nil {
			return Request{}, err
		}
	case spec.OAuth2 != nil:
		r.Kind = KindOAuth2
		r.TokenURL = spec.OAuth2.TokenURL
		r.SendInHeader = spec.OAuth2.AuthStyle != v1alpha1.AuthStyleParams
	case spec.Federation != nil:
		f := spec.Federation
		r.Kind = KindFederation
		r.TokenURL = strings.TrimRight(spec.Host, "/") + "/oidc/v1/token"
		r.ClientID, r.ClientSecret = f.ClientID, ""
		seconds := f.ExpirationSeconds
		if seconds == 0 {
			seconds = DefaultFederationTokenSeconds
		}
		if f.Audience == "" {
			return Request{}, &Error{Reason: v1alpha1.ReasonInvalidSpec, Message: "spec.federation.audience is empty",
				Hint: "set it to an audience of the Databricks federation policy"}
		}
		if err := r.useServiceAccount(in, f.ServiceAccountName, f.Audience, seconds); err != nil {
			return Request{}, err
		}
		defaultScopes = []string{DatabricksAllAPIsScope}
	default:
		return Request{}, &Error{Reason: v1alpha1.ReasonInvalidSpec, Message: "no identity block is set",
			Hint: "set exactly one of spec.azure, spec.databricks, spec.oauth2 or spec.federation"}
	}
	if len(r.Scopes) == 0 {
		r.Scopes = defaultScopes
	}
	u, err := url.Parse(r.TokenURL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return Request{}, &Error{Reason: v1alpha1.ReasonInvalidSpec, Message: fmt.Sprintf("token endpoint %q is not an https:// URL", r.TokenURL),
			Hint: "fix spec.host, spec.azure.authorityHost or spec.oauth2.tokenURL"}
	}
	return r, nil
}

// azureCredential fills in how an Entra application proves its identity: the client secret
// NewRequestFromInputs already took, a ServiceAccount token, or a certificate.
func (r *Request) azureCredential(az *v1alpha1.AzureIdentity, in Inputs) error {
	if n := countTrue(az.ClientSecretRef != nil, az.WorkloadIdentity != nil, az.ClientCertificateRef != nil); n != 1 {
		return &Error{Reason: v1alpha1.ReasonInvalidSpec, Message: fmt.Sprintf("spec.azure sets %d of clientSecretRef, workloadIdentity and clientCertificateRef", n),
			Hint: "set exactly one of them"}
	}
	if az.ClientSecretRef != nil {
		return nil
	}
	if az.ClientID == "" {
		return &Error{Reason: v1alpha1.ReasonInvalidSpec, Message: "spec.azure.clientID is empty",
			Hint: "set it to the application (client) ID: workloadIdentity and clientCertificateRef have no Secret to read it from"}
	}
	r.ClientID, r.ClientSecret = az.ClientID, ""
	if wi := az.WorkloadIdentity; wi != nil {
		return r.useServiceAccount(in, wi.ServiceAccountName, AzureTokenExchangeAudience, AzureServiceAccountTokenSeconds)
	}
	if _, _, err := parseClientCertificate(in.CertificatePEM, in.PrivateKeyPEM); err != nil {
		return err
	}
	r.ClientCertificate = &ClientCertificate{CertPEM: in.CertificatePEM, KeyPEM: in.PrivateKeyPEM}
	return nil
}

func (r *Request) useServiceAccount(in Inputs, name, audience string, seconds int64) error {
	if in.Namespace == "" || name == "" {
		return &Error{Reason: v1alpha1.ReasonInvalidSpec, Message: "the ServiceAccount or its namespace is unknown",
			Hint: "set serviceAccountName"}
	}
	r.ServiceAccount = &ServiceAccountToken{Namespace: in.Namespace, Name: name, Audience: audience, ExpirationSeconds: seconds}
	r.SubjectToken = in.SubjectToken
	return nil
}

func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// Hash is a hex SHA-256 over every field the token depends on: kind, endpoint (which carries the
// tenant, authority host or workspace host), client ID, client-secret bytes, scopes, auth style,
// CA bundle, and for blocks without a secret the ServiceAccount (namespace, name, audience,
// lifetime; never its ever-changing token) or the certificate and key bytes. Fields are
// length-prefixed so that no two different requests encode alike. It is deterministic across
// restarts and reveals nothing usable about the secret. The ServiceAccount's namespace is part of
// it: two namespaces' ServiceAccounts of the same name are different identities and must never
// share a token through the SharedCache. Requests with a client secret hash as they always did.
func (r Request) Hash() string {
	h := sha256.New()
	writeBytes := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	write := func(s string) { writeBytes([]byte(s)) }
	write("dbtoken.io/inputs/v1")
	write(string(r.Kind))
	write(r.TokenURL)
	write(r.ClientID)
	write(r.ClientSecret)
	write(fmt.Sprint(len(r.Scopes)))
	for _, s := range r.Scopes {
		write(s)
	}
	write(fmt.Sprint(r.SendInHeader))
	writeBytes(r.CABundle)
	if sa := r.ServiceAccount; sa != nil {
		write("serviceAccount")
		write(sa.Namespace)
		write(sa.Name)
		write(sa.Audience)
		write(strconv.FormatInt(sa.ExpirationSeconds, 10))
	}
	if c := r.ClientCertificate; c != nil {
		write("clientCertificate")
		writeBytes(c.CertPEM)
		writeBytes(c.KeyPEM)
	}
	return hex.EncodeToString(h.Sum(nil))
}
