package token

import (
	"context"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/test/idp"
)

// BenchmarkClientCredentialsToken measures one full exchange over TLS against the test identity
// provider on loopback, connection reuse included: the cost the operator pays per refresh.
func BenchmarkClientCredentialsToken(b *testing.B) {
	srv, err := idp.Start(idp.Options{TokenLifetime: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	srv.AddDatabricksClient("bench-client", "bench-secret")
	p := NewClientCredentials(Options{RootCAs: srv.CertPool(), AllowedHosts: MustParseHostPolicy("127.0.0.1")})
	req := Request{Kind: KindDatabricks, TokenURL: srv.URL() + "/oidc/v1/token", ClientID: "bench-client",
		ClientSecret: "bench-secret", Scopes: []string{DatabricksAllAPIsScope}, SendInHeader: true}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Token(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequestHash measures the inputs hash computed on every reconcile pass.
func BenchmarkRequestHash(b *testing.B) {
	req := Request{Kind: KindAzure, TokenURL: "https://login.microsoftonline.com/t/oauth2/v2.0/token", ClientID: "c",
		ClientSecret: "s", Scopes: []string{AzureDatabricksScope}, CABundle: make([]byte, 4096)}
	b.ReportAllocs()
	for b.Loop() {
		_ = req.Hash()
	}
}
