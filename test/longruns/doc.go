// Package longruns tests runs longer than a token with a real client: the Databricks Go SDK,
// configured only by DATABRICKS_HOST, DATABRICKS_AUTH_TYPE=metadata-service and
// DATABRICKS_METADATA_SERVICE_URL (plus SSL_CERT_FILE to trust the test workspace), calls the
// test workspace (test/workspace) in a separate process for several token lifetimes, while the
// token server (internal/tokenserver) serves a Secret volume that a rotator updates the way the
// operator and the kubelet do: a new token from the test IdP (test/idp) at expiry − renewBefore,
// published after a propagation delay through the kubelet's atomic ..data swap
// (test/secretvolume).
//
// Every call must succeed with a token the IdP considers valid at that moment; every token the
// server hands out must be the one on disk at that time, with expires_on equal to the token's exp.
// The same harness, pointed at deliberately broken servers (one caching its first answer, one
// reporting a wrong expires_on), must report failures: that is what proves it can fail.
//
// `make test` runs it with 20-second tokens (about 70 s, three lifetimes); `make test-long-runs`
// with the 2-minute tokens of the acceptance (-token-lifetime=2m, about 7 minutes).
package longruns
