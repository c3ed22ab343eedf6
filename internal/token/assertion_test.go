package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// testCert is a self-signed client certificate as a kubernetes.io/tls Secret would hold it.
type testCert struct {
	certPEM, keyPEM []byte
	cert            *x509.Certificate
	key             *rsa.PrivateKey
}

// keyFormat says how tls.key is encoded.
type keyFormat int

const (
	pkcs1 keyFormat = iota
	pkcs8
)

var rsaTestKeys = map[keyFormat]*rsa.PrivateKey{}

// newTestCert makes an RSA certificate valid from notBefore to notAfter. Keys are generated once
// per format (RSA generation is slow) and reused across certificates.
func newTestCert(t testing.TB, notBefore, notAfter time.Time, format keyFormat) testCert {
	t.Helper()
	key := rsaTestKeys[format]
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
		rsaTestKeys[format] = key
	}
	return certFor(t, key, notBefore, notAfter, format)
}

func certFor(t testing.TB, key *rsa.PrivateKey, notBefore, notAfter time.Time, format keyFormat) testCert {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "dbt-prod client certificate"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	var keyBlock *pem.Block
	switch format {
	case pkcs1:
		keyBlock = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}
	case pkcs8:
		b, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		keyBlock = &pem.Block{Type: "PRIVATE KEY", Bytes: b}
	}
	return testCert{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(keyBlock),
		cert:    cert,
		key:     key,
	}
}

func TestSignClientAssertion(t *testing.T) {
	const tokenURL = "https://login.microsoftonline.com/" + testTenant + "/oauth2/v2.0/token"
	now := t0.Add(1500 * time.Millisecond) // not on a whole second: claims are truncated
	for name, format := range map[string]keyFormat{"PKCS#1": pkcs1, "PKCS#8": pkcs8} {
		t.Run(name, func(t *testing.T) {
			tc := newTestCert(t, t0.Add(-time.Hour), t0.Add(365*24*time.Hour), format)
			signed, err := signClientAssertion(&ClientCertificate{CertPEM: tc.certPEM, KeyPEM: tc.keyPEM}, testClientID, tokenURL, now)
			if err != nil {
				t.Fatalf("signClientAssertion: %v", err)
			}
			// The signature verifies with the certificate's public key as PS256 and nothing else.
			parser := jwt.NewParser(jwt.WithValidMethods([]string{"PS256"}), jwt.WithTimeFunc(func() time.Time { return now }))
			claims := jwt.MapClaims{}
			tok, err := parser.ParseWithClaims(signed, claims, func(*jwt.Token) (any, error) { return tc.cert.PublicKey, nil })
			if err != nil {
				t.Fatalf("the assertion does not verify as PS256 with the certificate's key: %v", err)
			}
			sum := sha256.Sum256(tc.cert.Raw)
			wantHeader := map[string]any{"alg": "PS256", "typ": "JWT", "x5t#S256": base64.RawURLEncoding.EncodeToString(sum[:])}
			if len(tok.Header) != len(wantHeader) {
				t.Errorf("header %v, want exactly %v", tok.Header, wantHeader)
			}
			for k, v := range wantHeader {
				if tok.Header[k] != v {
					t.Errorf("header %s = %v, want %v", k, tok.Header[k], v)
				}
			}
			sec := now.Truncate(time.Second).Unix()
			want := map[string]any{
				"aud": tokenURL, "iss": testClientID, "sub": testClientID,
				"nbf": float64(sec), "iat": float64(sec), "exp": float64(sec + 300),
			}
			for k, v := range want {
				if claims[k] != v {
					t.Errorf("claim %s = %v, want %v", k, claims[k], v)
				}
			}
			jti, _ := claims["jti"].(string)
			if len(jti) != 36 {
				t.Errorf("jti %q, want a UUID", jti)
			}
			if len(claims) != len(want)+1 {
				t.Errorf("claims %v: want exactly aud, exp, iss, jti, nbf, sub, iat", claims)
			}
			again, err := signClientAssertion(&ClientCertificate{CertPEM: tc.certPEM, KeyPEM: tc.keyPEM}, testClientID, tokenURL, now)
			if err != nil {
				t.Fatal(err)
			}
			c2 := jwt.MapClaims{}
			if _, _, err := jwt.NewParser().ParseUnverified(again, c2); err != nil || c2["jti"] == jti {
				t.Errorf("a second assertion reuses jti %q (err %v); Entra requires a unique one", jti, err)
			}
		})
	}
}

func TestSignClientAssertionRefusesCertificateOutsideItsValidity(t *testing.T) {
	tests := map[string]struct {
		notBefore, notAfter time.Time
		want                string
	}{
		"expired":          {t0.Add(-48 * time.Hour), t0.Add(-time.Hour), "expired at " + t0.Add(-time.Hour).Format(time.RFC3339)},
		"not yet valid":    {t0.Add(time.Hour), t0.Add(48 * time.Hour), "not valid before"},
		"expires next sec": {t0.Add(-time.Hour), t0.Add(time.Second), ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := newTestCert(t, tc.notBefore, tc.notAfter, pkcs8)
			_, err := signClientAssertion(&ClientCertificate{CertPEM: c.certPEM, KeyPEM: c.keyPEM}, testClientID, "https://login.example/t/oauth2/v2.0/token", t0)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("signClientAssertion: %v", err)
				}
				return
			}
			e := requireError(t, err)
			if e.Reason != v1alpha1.ReasonInvalidSpec || e.Transient || !strings.Contains(e.Message, tc.want) || e.Hint == "" {
				t.Errorf("got %+v, want permanent InvalidSpec mentioning %q with a hint", e, tc.want)
			}
		})
	}
}

func TestParseClientCertificate(t *testing.T) {
	valid := newTestCert(t, t0.Add(-time.Hour), t0.Add(time.Hour), pkcs1)
	other := newTestCert(t, t0.Add(-time.Hour), t0.Add(time.Hour), pkcs8)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPKCS8, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecSEC1, _ := x509.MarshalECPrivateKey(ecKey)
	pemOf := func(typ string, b []byte, headers map[string]string) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b, Headers: headers})
	}
	tests := map[string]struct {
		cert, key []byte
		want      string // "" = accepted
	}{
		"PKCS#1 key":                   {cert: valid.certPEM, key: valid.keyPEM},
		"PKCS#8 key":                   {cert: other.certPEM, key: other.keyPEM},
		"chain, leaf not first":        {cert: append(append([]byte{}, other.certPEM...), valid.certPEM...), key: valid.keyPEM},
		"key with a leading comment":   {cert: valid.certPEM, key: append([]byte("# generated by openssl\n"), valid.keyPEM...)},
		"key of another certificate":   {cert: valid.certPEM, key: other.keyPEM, want: "does not belong to the certificate"},
		"EC key, PKCS#8":               {cert: valid.certPEM, key: pemOf("PRIVATE KEY", ecPKCS8, nil), want: "not an RSA private key"},
		"EC key, SEC 1":                {cert: valid.certPEM, key: pemOf("EC PRIVATE KEY", ecSEC1, nil), want: "not an RSA private key"},
		"encrypted PKCS#8":             {cert: valid.certPEM, key: pemOf("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}, nil), want: "encrypted"},
		"encrypted PKCS#1 (DEK-Info)":  {cert: valid.certPEM, key: pemOf("RSA PRIVATE KEY", []byte{1, 2, 3}, map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}), want: "encrypted"},
		"key is not PEM":               {cert: valid.certPEM, key: []byte("not a key"), want: "no PEM private key"},
		"key block is garbage":         {cert: valid.certPEM, key: pemOf("PRIVATE KEY", []byte("garbage"), nil), want: "cannot be parsed"},
		"certificate is not PEM":       {cert: []byte("MIIB..."), key: valid.keyPEM, want: "no PEM CERTIFICATE"},
		"certificate block is garbage": {cert: pemOf("CERTIFICATE", []byte("garbage"), nil), key: valid.keyPEM, want: "cannot be parsed"},
		"key and certificate swapped":  {cert: valid.keyPEM, key: valid.certPEM, want: "no PEM private key"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cert, key, err := parseClientCertificate(tc.cert, tc.key)
			if tc.want == "" {
				if err != nil || cert == nil || key == nil {
					t.Fatalf("parseClientCertificate: %v", err)
				}
				if !key.PublicKey.Equal(cert.PublicKey) {
					t.Error("returned a certificate that does not match the key")
				}
				return
			}
			e := requireError(t, err)
			if e.Reason != v1alpha1.ReasonInvalidSpec || !strings.Contains(e.Message, tc.want) || e.Hint == "" {
				t.Errorf("got %+v, want InvalidSpec mentioning %q with a hint", e, tc.want)
			}
		})
	}
}

func mustRSA(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
