package token

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// maxTokenResponse bounds the body read from a token endpoint (x/oauth2 uses the same 1 MiB).
const maxTokenResponse = 1 << 20

// errUnreadableAnswer stands for a 2xx answer without a usable token; classify describes it from
// the recorded status and content type.
var errUnreadableAnswer = errors.New("token response without access_token")

// assertionExchange performs the exchanges in which the client proves its identity with a JWT
// instead of a client secret, which x/oauth2 does not implement:
//
//   - federation: RFC 8693 token exchange of a ServiceAccount token at {host}/oidc/v1/token
//     (grant_type token-exchange, subject_token, subject_token_type jwt, scope, client_id when
//     the policy belongs to a service principal);
//   - azure with workloadIdentity or clientCertificateRef: the client-credentials grant with an
//     RFC 7523 client assertion (client_id, client_assertion_type jwt-bearer, client_assertion,
//     scope), the assertion being a ServiceAccount token or a certificate-signed JWT.
//
// It runs on the same client as the client-credentials path (transport per trust set, no
// redirects, the exchange's deadline), and its failures go through the same classification.
func (p *ClientCredentials) assertionExchange(ctx context.Context, client *http.Client, rec *responseRecorder, req Request, issuedAt time.Time) (Token, error) {
	form, assertion, err := p.assertionForm(ctx, req)
	if err != nil {
		return Token{}, err
	}
	req.assertion = assertion
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost, req.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return Token{}, &Error{Reason: v1alpha1.ReasonInvalidSpec, Message: fmt.Sprintf("token endpoint %q is not a valid URL", req.TokenURL)}
	}
	httpReq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	httpReq.Header.Set("Accept", "application/json")
	resp, err := client.Do(httpReq)
	if err != nil {
		return Token{}, federationVerdict(p.classify(ctx, err, rec, req), req)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return Token{}, p.classify(ctx, err, rec, req)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Token{}, federationVerdict(p.classify(ctx, &oauth2.RetrieveError{Response: resp, Body: body}, rec, req), req)
	}
	tok, ok := parseTokenResponse(body)
	if !ok {
		return Token{}, p.classify(ctx, errUnreadableAnswer, rec, req)
	}
	expiresAt, err := expiry(tok, issuedAt)
	if err != nil {
		return Token{}, err
	}
	return Token{AccessToken: tok.AccessToken, IssuedAt: issuedAt, ExpiresAt: expiresAt}, nil
}

// assertionForm builds the form body and returns the assertion it carries, minting the
// ServiceAccount token or signing the certificate assertion only now: after the host check, for
// this one request.
func (p *ClientCredentials) assertionForm(ctx context.Context, req Request) (url.Values, string, error) {
	var assertion string
	switch {
	case req.ServiceAccount != nil:
		if req.SubjectToken == nil {
			return nil, "", &Error{Reason: v1alpha1.ReasonInvalidSpec, Message: "no way to request a ServiceAccount token was configured"}
		}
		tok, err := req.SubjectToken(ctx, *req.ServiceAccount)
		if err != nil {
			return nil, "", serviceAccountTokenError(err, *req.ServiceAccount)
		}
		assertion = tok
	case req.ClientCertificate != nil:
		signed, err := signClientAssertion(req.ClientCertificate, req.ClientID, req.TokenURL, p.opts.Clock.Now())
		if err != nil {
			return nil, "", err
		}
		assertion = signed
	}
	form := url.Values{}
	if len(req.Scopes) > 0 {
		form.Set("scope", strings.Join(req.Scopes, " "))
	}
	if req.Kind == KindFederation {
		form.Set("grant_type", GrantTypeTokenExchange)
		form.Set("subject_token", assertion)
		form.Set("subject_token_type", TokenTypeJWT)
		if req.ClientID != "" {
			form.Set("client_id", req.ClientID)
		}
		return form, assertion, nil
	}
	form.Set("grant_type", "client_credentials")
	form.Set("client_id", req.ClientID)
	form.Set("client_assertion_type", ClientAssertionTypeJWTBearer)
	form.Set("client_assertion", assertion)
	return form, assertion, nil
}

// serviceAccountTokenError keeps a classified *Error from the token requester as it is and
// describes anything else as a transient failure, without its text (which might quote a token).
func serviceAccountTokenError(err error, sa ServiceAccountToken) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return &Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Code: "timeout",
			Message: fmt.Sprintf("requesting a token for ServiceAccount %s/%s timed out", sa.Namespace, sa.Name)}
	}
	return &Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Code: "TokenRequest",
		Message: fmt.Sprintf("requesting a token for ServiceAccount %s/%s failed", sa.Namespace, sa.Name),
		Hint:    "retrying with backoff; check the API server"}
}

// federationHint replaces the generic advice for a refused token exchange: what Databricks
// checks is the federation policy, not a client secret.
const federationHint = "no Databricks federation policy accepts the ServiceAccount token: the policy's issuer must be the cluster's service-account issuer, its subject system:serviceaccount:<namespace>:<serviceAccountName>, its audiences must include spec.federation.audience, and spec.federation.clientID must be the service principal the policy belongs to (empty for an account-wide policy)"

// federationVerdict reports a refused token exchange as InvalidClient: the ServiceAccount token
// is the client's credential, and a policy that does not accept it is a wrong credential.
func federationVerdict(e *Error, req Request) *Error {
	if req.Kind != KindFederation {
		return e
	}
	switch e.Code {
	case "invalid_grant", "invalid_client", "unauthorized_client":
		e.Reason, e.Hint = v1alpha1.ReasonInvalidClient, federationHint
	}
	return e
}

// parseTokenResponse reads a JSON token response into an oauth2.Token whose Extra holds the raw
// fields, so that expiry() reads expires_in (a number, or a quoted number) as for x/oauth2.
func parseTokenResponse(body []byte) (*oauth2.Token, bool) {
	raw := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, false
	}
	access, _ := raw["access_token"].(string)
	if access == "" {
		return nil, false
	}
	typ, _ := raw["token_type"].(string)
	tok := &oauth2.Token{AccessToken: access, TokenType: typ}
	return tok.WithExtra(raw), true
}
