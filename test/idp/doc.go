// Package idp is a fake OAuth 2.0 identity provider for tests and the local demo.
//
// It speaks the two token-endpoint wire shapes the operator has to handle in production, over
// real TLS, so that controller tests, the end-to-end test, benchmarks and the demo exercise the
// same code paths (HTTP client, CA handling, JSON parsing, error classification) as a real
// exchange:
//
//   - Databricks OAuth M2M: POST /oidc/v1/token, client credentials in HTTP Basic (or the form),
//     answered like a Databricks workspace, including its {"error","error_description","error_id"}
//     error bodies.
//   - Microsoft Entra ID v2.0: POST /{tenant}/oauth2/v2.0/token, client credentials in the form
//     (or HTTP Basic), answered like login.microsoftonline.com, including the AADSTS error codes,
//     the "\r\nTrace ID: …\r\nCorrelation ID: …\r\nTimestamp: …" suffix of error_description and
//     the error_codes/trace_id/correlation_id/error_uri fields.
//   - Databricks OAuth token federation: POST /oidc/v1/token with grant_type
//     urn:ietf:params:oauth:grant-type:token-exchange (RFC 8693). The subject_token is verified
//     for real against a registered FederationPolicy (AddFederationPolicy): signature (RS256 or
//     ES256, the policy's JWKS), issuer, audience, subject, exp and nbf. The issued token lives
//     no longer than the subject token.
//   - Entra client assertions (RFC 7523 jwt-bearer) on the v2.0 token endpoint: federated
//     ServiceAccount tokens against a federated identity credential
//     (AddAzureFederatedCredential), and certificate-signed assertions against an uploaded
//     certificate (AddAzureCertificate: x5t#S256, or a SHA-1 x5t, read as bytes in either
//     base64 alphabet; PS256/RS256 signature, aud = the token endpoint, iss = sub = client ID,
//     jti, nbf/exp, at most ten minutes), with Entra's AADSTS codes for each failure.
//
// Why a faithful fake rather than a stub: the operator's Ready reasons (InvalidClient, NotFound,
// Unauthorized, RefreshFailing, ...) are derived from exactly these status codes, error codes and
// body shapes, and the operator must never leak tokens, secrets or raw bodies. If the fake were
// more lenient or more regular than the real providers, those code paths would be tested against
// something that never happens in production. So when changing this package, check the real
// provider's behaviour first and keep the quirks (for example, Entra answers an unknown tenant
// with 400, not 404, and an unknown client with unauthorized_client, not invalid_client).
//
// Faithful means in both directions: what a real client sends and the real provider accepts,
// the fake accepts too, and its tests drive the real client libraries against it (azidentity,
// which is MSAL Go underneath, with a client secret, a certificate, a client assertion and
// workload identity; databricks-sdk-go with OAuth M2M and token federation). So it accepts MSAL's
// "openid offline_access profile" next to the /.default scope, publishes Entra's whole tenant
// discovery document (MSAL refuses one without authorization_endpoint) and reads MSAL Go's
// padded standard-base64 thumbprints. An azidentity client of the fake sets
// DisableInstanceDiscovery, as for any authority host that Entra does not know.
//
// Besides the token endpoints the server offers what a test needs to observe and disturb the
// exchange: fault injection (FailNext), a record of every request without secrets (Requests,
// including what a presented assertion claimed and whether it verified), the list of every token
// it issued and every assertion it received (IssuedTokens, Assertions: to assert none leaked into
// logs or status), and token validation as a resource server would do it (ValidateToken, JWKS).
//
// Where the real provider's behaviour is not publicly documented (for example the order in which
// Entra checks a request, or what Databricks says about a missing scope), the choice made here is
// written down next to the code so it can be corrected when someone observes the real answer.
package idp
