package token

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

func TestNewRequestFromInputsSecretless(t *testing.T) {
	cert := newTestCert(t, t0.Add(-time.Hour), t0.Add(time.Hour), pkcs1)
	in := Inputs{Namespace: testNamespace, ClientID: "ignored", ClientSecret: "ignored",
		CertificatePEM: cert.certPEM, PrivateKeyPEM: cert.keyPEM, CABundle: []byte("ca")}
	tests := map[string]struct {
		spec *v1alpha1.DatabricksCredentialSpec
		want Request
	}{
		"federation, service principal policy": {
			spec: federationSpec("https://dbc-a1b2c3d4-e5f6.cloud.databricks.com/", testAudience, testSPClientID),
			want: Request{Kind: KindFederation, TokenURL: "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com/oidc/v1/token",
				ClientID: testSPClientID, Scopes: []string{"all-apis"}, CABundle: []byte("ca"),
				ServiceAccount: &ServiceAccountToken{Namespace: testNamespace, Name: testSA, Audience: testAudience, ExpirationSeconds: 3600}},
		},
		"federation, account-wide policy, custom lifetime and scopes": {
			spec: func() *v1alpha1.DatabricksCredentialSpec {
				s := federationSpec("https://dbc-x.cloud.databricks.com", "1234-abcd", "")
				s.Federation.ExpirationSeconds = 900
				s.Scopes = []string{"sql"}
				return s
			}(),
			want: Request{Kind: KindFederation, TokenURL: "https://dbc-x.cloud.databricks.com/oidc/v1/token",
				Scopes: []string{"sql"}, CABundle: []byte("ca"),
				ServiceAccount: &ServiceAccountToken{Namespace: testNamespace, Name: testSA, Audience: "1234-abcd", ExpirationSeconds: 900}},
		},
		"azure workload identity": {
			spec: azureWorkloadIdentitySpec(""),
			want: Request{Kind: KindAzure, TokenURL: "https://login.microsoftonline.com/" + testTenant + "/oauth2/v2.0/token",
				ClientID: testAppClientID, Scopes: []string{AzureDatabricksScope}, CABundle: []byte("ca"),
				ServiceAccount: &ServiceAccountToken{Namespace: testNamespace, Name: testSA, Audience: "api://AzureADTokenExchange", ExpirationSeconds: 600}},
		},
		"azure certificate": {
			spec: azureCertificateSpec("https://login.microsoftonline.us/"),
			want: Request{Kind: KindAzure, TokenURL: "https://login.microsoftonline.us/" + testTenant + "/oauth2/v2.0/token",
				ClientID: testAppClientID, Scopes: []string{AzureDatabricksScope}, CABundle: []byte("ca"),
				ClientCertificate: &ClientCertificate{CertPEM: cert.certPEM, KeyPEM: cert.keyPEM}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := NewRequestFromInputs(tc.spec, in)
			if err != nil {
				t.Fatalf("NewRequestFromInputs: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("NewRequestFromInputs:\n got %#v %+v %+v\nwant %#v %+v %+v", got, got.ServiceAccount, got.Scopes, tc.want, tc.want.ServiceAccount, tc.want.Scopes)
			}
			if got.ClientSecret != "" {
				t.Error("a secretless identity carries a client secret")
			}
		})
	}
	t.Run("in.SubjectToken is passed on", func(t *testing.T) {
		called := false
		in := in
		in.SubjectToken = func(context.Context, ServiceAccountToken) (string, error) { called = true; return "", nil }
		got, err := NewRequestFromInputs(federationSpec("https://dbc-x.cloud.databricks.com", testAudience, ""), in)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = got.SubjectToken(context.Background(), *got.ServiceAccount)
		if !called {
			t.Error("SubjectToken is not the one given")
		}
	})
}

func TestNewRequestFromInputsSecretlessInvalid(t *testing.T) {
	cert := newTestCert(t, t0.Add(-time.Hour), t0.Add(time.Hour), pkcs1)
	other := newTestCert(t, t0.Add(-time.Hour), t0.Add(time.Hour), pkcs8)
	in := Inputs{Namespace: testNamespace, CertificatePEM: cert.certPEM, PrivateKeyPEM: cert.keyPEM}
	tests := map[string]struct {
		spec   func() *v1alpha1.DatabricksCredentialSpec
		in     func(Inputs) Inputs
		reason string
		want   string
	}{
		"azure with two credentials": {
			spec: func() *v1alpha1.DatabricksCredentialSpec {
				s := azureCertificateSpec("")
				s.Azure.WorkloadIdentity = &v1alpha1.AzureWorkloadIdentity{ServiceAccountName: testSA}
				return s
			},
			reason: v1alpha1.ReasonInvalidSpec, want: "sets 2 of clientSecretRef, workloadIdentity and clientCertificateRef",
		},
		"azure workload identity without a client ID": {
			spec: func() *v1alpha1.DatabricksCredentialSpec {
				s := azureWorkloadIdentitySpec("")
				s.Azure.ClientID = ""
				return s
			},
			reason: v1alpha1.ReasonInvalidSpec, want: "clientID is empty",
		},
		"federation and databricks": {
			spec: func() *v1alpha1.DatabricksCredentialSpec {
				s := federationSpec("https://dbc-x.cloud.databricks.com", testAudience, "")
				s.Databricks = &v1alpha1.DatabricksIdentity{}
				return s
			},
			reason: v1alpha1.ReasonInvalidSpec, want: "2 identity blocks",
		},
		"federation without audience": {
			spec: func() *v1alpha1.DatabricksCredentialSpec {
				return federationSpec("https://dbc-x.cloud.databricks.com", "", "")
			},
			reason: v1alpha1.ReasonInvalidSpec, want: "audience is empty",
		},
		"federation, http host": {
			spec: func() *v1alpha1.DatabricksCredentialSpec {
				return federationSpec("http://dbc-x.cloud.databricks.com", testAudience, "")
			},
			reason: v1alpha1.ReasonInvalidSpec, want: "not an https:// URL",
		},
		"certificate and key do not match": {
			spec:   func() *v1alpha1.DatabricksCredentialSpec { return azureCertificateSpec("") },
			in:     func(in Inputs) Inputs { in.PrivateKeyPEM = other.keyPEM; return in },
			reason: v1alpha1.ReasonInvalidSpec, want: "does not belong to the certificate",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			i := in
			if tc.in != nil {
				i = tc.in(i)
			}
			got, err := NewRequestFromInputs(tc.spec(), i)
			e := requireError(t, err)
			if e.Reason != tc.reason || !strings.Contains(e.Message, tc.want) || e.Hint == "" {
				t.Errorf("got %+v, want %s mentioning %q with a hint", e, tc.reason, tc.want)
			}
			if !reflect.DeepEqual(got, Request{}) {
				t.Errorf("Request %#v, want zero on error", got)
			}
		})
	}
}

func TestRequestHashSecretless(t *testing.T) {
	cert := newTestCert(t, t0.Add(-time.Hour), t0.Add(time.Hour), pkcs1)
	other := newTestCert(t, t0.Add(-time.Hour), t0.Add(2*time.Hour), pkcs1)
	fed := func() Request {
		r := mustRequestFrom(t, federationSpec("https://dbc-x.cloud.databricks.com", testAudience, testSPClientID),
			Inputs{Namespace: testNamespace, SubjectToken: func(context.Context, ServiceAccountToken) (string, error) { return "a", nil }})
		return r
	}
	certReq := func() Request {
		return mustRequestFrom(t, azureCertificateSpec(""), Inputs{CertificatePEM: cert.certPEM, PrivateKeyPEM: cert.keyPEM})
	}
	t.Run("the ServiceAccount token source is not part of it", func(t *testing.T) {
		a, b := fed(), fed()
		b.SubjectToken = func(context.Context, ServiceAccountToken) (string, error) { return "b", nil }
		if a.Hash() != b.Hash() {
			t.Error("hash depends on the token source")
		}
	})
	t.Run("a client-secret request hashes as before", func(t *testing.T) {
		r := baseRequest()
		if r.Hash() != "d57c40dbda59430c1bd3f05c11ab2a7667d9b7b98135f6ec05c6d707eefd45fd" {
			t.Error("the hash of client-secret requests changed")
		}
	})
	changes := map[string]struct {
		base   func() Request
		mutate func(r *Request)
	}{
		"ServiceAccount namespace": {fed, func(r *Request) { r.ServiceAccount.Namespace = "other" }},
		"ServiceAccount name":      {fed, func(r *Request) { r.ServiceAccount.Name = "other" }},
		"audience":                 {fed, func(r *Request) { r.ServiceAccount.Audience = "other" }},
		"expirationSeconds":        {fed, func(r *Request) { r.ServiceAccount.ExpirationSeconds = 601 }},
		"namespace/name boundary":  {fed, func(r *Request) { r.ServiceAccount.Namespace += "d"; r.ServiceAccount.Name = r.ServiceAccount.Name[1:] }},
		"client ID (policy)":       {fed, func(r *Request) { r.ClientID = "" }},
		"endpoint":                 {fed, func(r *Request) { r.TokenURL = "https://dbc-y.cloud.databricks.com/oidc/v1/token" }},
		"certificate": {certReq, func(r *Request) {
			r.ClientCertificate = &ClientCertificate{CertPEM: other.certPEM, KeyPEM: cert.keyPEM}
		}},
		"key": {certReq, func(r *Request) {
			r.ClientCertificate = &ClientCertificate{CertPEM: cert.certPEM, KeyPEM: other.keyPEM[1:]}
		}},
		"certificate/key boundary": {certReq, func(r *Request) {
			c := r.ClientCertificate
			r.ClientCertificate = &ClientCertificate{CertPEM: append(append([]byte{}, c.CertPEM...), c.KeyPEM[0]), KeyPEM: c.KeyPEM[1:]}
		}},
		"certificate, not a secret": {certReq, func(r *Request) { r.ClientCertificate = nil; r.ClientSecret = string(cert.keyPEM) }},
	}
	for name, tc := range changes {
		t.Run(name, func(t *testing.T) {
			base := tc.base()
			r := tc.base()
			if r.ServiceAccount != nil {
				sa := *r.ServiceAccount
				r.ServiceAccount = &sa
			}
			tc.mutate(&r)
			if r.Hash() == base.Hash() {
				t.Error("the hash did not change")
			}
		})
	}
}

func TestRequestNeverPrintsPrivateKey(t *testing.T) {
	cert := newTestCert(t, t0.Add(-time.Hour), t0.Add(time.Hour), pkcs8)
	r := mustRequestFrom(t, azureCertificateSpec(""), Inputs{CertificatePEM: cert.certPEM, PrivateKeyPEM: cert.keyPEM})
	keyLine := strings.Split(string(cert.keyPEM), "\n")[3]
	for name, out := range map[string]string{
		"%v":                     fmt.Sprintf("%v", r),
		"%+v":                    fmt.Sprintf("%+v", r),
		"%#v":                    fmt.Sprintf("%#v", r),
		"%+v certificate":        fmt.Sprintf("%+v", r.ClientCertificate),
		"%#v certificate":        fmt.Sprintf("%#v", r.ClientCertificate),
		"%v certificate value":   fmt.Sprintf("%v", *r.ClientCertificate),
		"slog JSON":              logWith(slog.NewJSONHandler, r),
		"slog JSON, certificate": logWith(slog.NewJSONHandler, r.ClientCertificate),
	} {
		if strings.Contains(out, keyLine) || strings.Contains(out, "PRIVATE KEY") {
			t.Errorf("%s prints the private key: %s", name, out)
		}
	}
	if !strings.Contains(r.String(), "with a client certificate") || !strings.Contains(r.String(), testAppClientID) {
		t.Errorf("String() = %q, want the client ID and the credential kind", r.String())
	}
}
