// Package tokenserver serves the token of a mounted token Secret to the Databricks SDKs over
// their "metadata-service" protocol, so that a client which asks again before its token expires
// always gets the token the operator wrote last, however long it runs.
//
// The protocol, as the SDKs implement it (databricks-sdk-go config/auth_metadata_service.go,
// databricks-sdk-py credentials_provider.py): the client sends
//
//	GET <DATABRICKS_METADATA_SERVICE_URL>
//	X-Databricks-Metadata-Version: 1
//	X-Databricks-Host: <the workspace URL it talks to>
//
// and expects 200 with {"access_token": ..., "token_type": "Bearer", "expires_on": <Unix
// seconds, a JSON number>}. A server must answer 4xx when the version header is missing or
// unsupported, and when it does not serve the host in X-Databricks-Host.
//
// The token is read on every request from the Secret volume, through the kubelet's `..data`
// symlink, so that a rotation delivered by the kubelet is served at once and the token and its
// expiry always come from the same version of the Secret (see Volume). Nothing is cached: the
// only state is what is on disk.
//
// The server never hands out a token that has expired or is about to (Options.MinRemaining), and
// never guesses a lifetime: the expiry comes from the Secret's DATABRICKS_TOKEN_EXPIRES_AT key,
// or from the JWT's exp claim, and an opaque token with neither is refused.
package tokenserver
