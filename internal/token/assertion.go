package token

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// ClientAssertionLifetime is how long a certificate-signed Entra client assertion is valid. It is
// used once, at once; Entra documents a short lifetime and MSAL uses ten minutes.
const ClientAssertionLifetime = 5 * time.Minute

// Error texts of the client-certificate checks, which run before any exchange.
const (
	certHint           = "spec.azure.clientCertificateRef must name a kubernetes.io/tls Secret whose tls.crt is the certificate uploaded to the app registration and whose tls.key is its RSA private key (PEM, PKCS#1 or PKCS#8, unencrypted)"
	errCertNoPEM       = "tls.crt holds no PEM CERTIFICATE block"
	errCertParse       = "tls.crt holds a certificate that cannot be parsed"
	errKeyNoPEM        = "tls.key holds no PEM private key"
	errKeyEncrypted    = "tls.key is an encrypted private key"
	errKeyNotRSA       = "tls.key is not an RSA private key; Entra client assertions are signed with PS256, which needs RSA"
	errKeyParse        = "tls.key holds a private key that cannot be parsed"
	errCertKeyMismatch = "tls.key does not belong to the certificate in tls.crt"
)

// parseClientCertificate reads a kubernetes.io/tls pair: the certificate whose public key matches
// the RSA private key (the leaf; tls.crt may carry its chain after it) and the key, PKCS#1
// ("RSA PRIVATE KEY") or PKCS#8 ("PRIVATE KEY"). Every failure is an *Error with reason
// InvalidSpec: the Secret exists and has the keys, but their content cannot be used.
func parseClientCertificate(certPEM, keyPEM []byte) (*x509.Certificate, *rsa.PrivateKey, error) {
	invalid := func(msg string) error {
		return &Error{Reason: v1alpha1.ReasonInvalidSpec, Message: "client certificate: " + msg, Hint: certHint}
	}
	key, err := parseRSAKey(keyPEM, invalid)
	if err != nil {
		return nil, nil, err
	}
	var certs []*x509.Certificate
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, invalid(errCertParse)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, nil, invalid(errCertNoPEM)
	}
	for _, c := range certs {
		if key.PublicKey.Equal(c.PublicKey) {
			return c, key, nil
		}
	}
	return nil, nil, invalid(errCertKeyMismatch)
}

func parseRSAKey(keyPEM []byte, invalid func(string) error) (*rsa.PrivateKey, error) {
	for rest := keyPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, invalid(errKeyNoPEM)
		}
		switch block.Type {
		case "RSA PRIVATE KEY":
			if _, encrypted := block.Headers["DEK-Info"]; encrypted {
				return nil, invalid(errKeyEncrypted)
			}
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, invalid(errKeyParse)
			}
			return k, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, invalid(errKeyParse)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, invalid(errKeyNotRSA)
			}
			return rk, nil
		case "ENCRYPTED PRIVATE KEY":
			return nil, invalid(errKeyEncrypted)
		case "EC PRIVATE KEY", "OPENSSH PRIVATE KEY":
			return nil, invalid(errKeyNotRSA)
		}
	}
}

// assertionClaims are the claims Entra requires of a certificate client assertion, in the order
// its documentation lists them.
type assertionClaims struct {
	Audience  string `json:"aud"`
	ExpiresAt int64  `json:"exp"`
	Issuer    string `json:"iss"`
	ID        string `json:"jti"`
	NotBefore int64  `json:"nbf"`
	Subject   string `json:"sub"`
	IssuedAt  int64  `json:"iat"`
}

// GetExpirationTime and the other jwt.Claims methods let jwt/v5 sign assertionClaims as they are.
func (c assertionClaims) GetExpirationTime() (*jwt.NumericDate, error) { return unix(c.ExpiresAt), nil }
func (c assertionClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return unix(c.IssuedAt), nil }
func (c assertionClaims) GetNotBefore() (*jwt.NumericDate, error)      { return unix(c.NotBefore), nil }
func (c assertionClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c assertionClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c assertionClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings{c.Audience}, nil
}

func unix(s int64) *jwt.NumericDate { return jwt.NewNumericDate(time.Unix(s, 0)) }

// signClientAssertion builds the client assertion Entra documents for certificate credentials
// (https://learn.microsoft.com/entra/identity-platform/certificate-credentials): header alg PS256,
// typ JWT and x5t#S256, the base64url SHA-256 thumbprint of the DER certificate, by which Entra
// finds the certificate uploaded to the app; claims aud = the token endpoint, iss = sub = the
// client ID, a unique jti, nbf = iat = now and exp = now + ClientAssertionLifetime. A certificate
// outside its validity period is refused here, before anything is sent.
func signClientAssertion(cc *ClientCertificate, clientID, tokenURL string, now time.Time) (string, error) {
	cert, key, err := parseClientCertificate(cc.CertPEM, cc.KeyPEM)
	if err != nil {
		return "", err
	}
	switch {
	case now.After(cert.NotAfter):
		return "", &Error{Reason: v1alpha1.ReasonInvalidSpec,
			Message: fmt.Sprintf("client certificate: the certificate in tls.crt expired at %s", cert.NotAfter.UTC().Format(time.RFC3339)),
			Hint:    "renew it, upload the new certificate to the app registration (Certificates & secrets) and update the Secret named by spec.azure.clientCertificateRef"}
	case now.Before(cert.NotBefore):
		return "", &Error{Reason: v1alpha1.ReasonInvalidSpec,
			Message: fmt.Sprintf("client certificate: the certificate in tls.crt is not valid before %s", cert.NotBefore.UTC().Format(time.RFC3339)),
			Hint:    "check the operator's clock, or wait until the certificate becomes valid"}
	}
	now = now.Truncate(time.Second)
	claims := assertionClaims{
		Audience:  tokenURL,
		ExpiresAt: now.Add(ClientAssertionLifetime).Unix(),
		Issuer:    clientID,
		ID:        newJTI(),
		NotBefore: now.Unix(),
		Subject:   clientID,
		IssuedAt:  now.Unix(),
	}
	t := jwt.NewWithClaims(jwt.SigningMethodPS256, claims)
	t.Header["x5t#S256"] = Thumbprint(cert.Raw)
	signed, err := t.SignedString(key)
	if err != nil {
		return "", &Error{Reason: v1alpha1.ReasonInvalidSpec, Message: "client certificate: signing the client assertion failed", Hint: certHint}
	}
	return signed, nil
}

// Thumbprint is the x5t#S256 of a DER certificate: base64url (no padding) of its SHA-256.
func Thumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// newJTI returns a random version 4 UUID, unique per assertion as Entra requires.
func newJTI() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
