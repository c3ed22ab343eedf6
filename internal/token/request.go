// Package token obtains OAuth access tokens for DatabricksCredentials: one client-credentials
// exchange per call, the wire shape chosen by the credential's identity block, with provider errors
// classified into the credential's Ready reasons. It never logs, stores or returns secret material
// in errors.
package token

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// Kind names the identity block a Request was built from.
type Kind string

const (
	KindAzure      Kind = "azure"
	KindDatabricks Kind = "databricks"
	KindOAuth2     Kind = "oauth2"
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

// Request is everything one token exchange needs. Its Hash is what the target Secret's
// inputs-hash annotation records, so a change of any field mints a new token.
type Request struct {
	Kind         Kind
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scopes       []string
	// SendInHeader sends the client credentials as HTTP Basic authentication; otherwise they go
	// in the form body.
	SendInHeader bool
	// CABundle is extra PEM roots to trust for TokenURL, on top of the system roots.
	CABundle []byte
}

// String describes the request without its secret, for logs.
func (r Request) String() string {
	return fmt.Sprintf("%s client %q at %s", r.Kind, r.ClientID, r.TokenURL)
}

// GoString keeps %#v from printing the client secret.
func (r Request) GoString() string { return "token.Request{" + r.String() + "}" }

// LogValue keeps slog (whose JSON handler would otherwise marshal every field) from logging the
// client secret.
func (r Request) LogValue() slog.Value { return slog.StringValue(r.String()) }

// NewRequest derives the token request for spec from the client credentials and optional CA
// bundle read from the cluster. Token endpoints come from the spec, never from discovery.
func NewRequest(spec *v1alpha1.DatabricksCredentialSpec, clientID, clientSecret string, caBundle []byte) (Request, error) {
	r := Request{ClientID: clientID, ClientSecret: clientSecret, CABundle: caBundle, Scopes: spec.Scopes}
	var defaultScopes []string
	// The API server's CEL rule enforces exactly one block; an older CRD without it must not make
	// the operator pick one silently.
	if blocks := countTrue(spec.Databricks != nil, spec.Azure != nil, spec.OAuth2 != nil); blocks > 1 {
		return Request{}, &Error{Reason: v1alpha1.ReasonInvalidSpec, Message: fmt.Sprintf("%d identity blocks are set", blocks),
			Hint: "set exactly one of spec.azure, spec.databricks or spec.oauth2"}
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
	case spec.OAuth2 != nil:
		r.Kind = KindOAuth2
		r.TokenURL = spec.OAuth2.TokenURL
		r.SendInHeader = spec.OAuth2.AuthStyle != v1alpha1.AuthStyleParams
	default:
		return Request{}, &Error{Reason: v1alpha1.ReasonInvalidSpec, Message: "no identity block is set",
			Hint: "set exactly one of spec.azure, spec.databricks or spec.oauth2"}
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
// tenant, authority host or workspace host), client ID, client-secret bytes, scopes, auth style and
// CA bundle. Fields are length-prefixed so that no two different requests encode alike. It is
// deterministic across restarts and reveals nothing usable about the secret.
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
	return hex.EncodeToString(h.Sum(nil))
}
