package cluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/test/idp"
)

const (
	tenantID = "f4da2730-4463-4910-98a7-13d0523c0b2a"
	// federationAudience is what a Databricks account federation policy expects by default: the
	// account ID. It is deliberately not the API server's audience: the operator refuses to
	// send a ServiceAccount token that the Kubernetes API itself would accept.
	federationAudience = "5a3c9e0b-7d41-4f2e-9c8a-1b2d3e4f5a6b"
)

// credentialSet creates, in ns, one DatabricksCredential per identity block, each against the
// test identity provider under its public names, and registers the matching service principals,
// certificate, federated credential and federation policy there. It returns the credentials'
// names.
func credentialSet(t *testing.T, ns string) []string {
	t.Helper()
	ctx := context.Background()
	create := func(obj client.Object) {
		t.Helper()
		obj.SetNamespace(ns)
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}
	clientSecret := func(name, clientID, secret string) {
		create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name},
			Data: map[string][]byte{"client-id": []byte(clientID), "client-secret": []byte(secret)}})
	}
	ca := &v1alpha1.CABundleReference{Name: "test-ca"}
	create(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "test-ca"}, Data: map[string]string{"ca.crt": string(fakes.caPEM)}})
	cred := func(name string, spec v1alpha1.DatabricksCredentialSpec) {
		spec.CABundleRef = ca
		create(&v1alpha1.DatabricksCredential{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec})
	}
	issuer, jwks := serviceAccountIssuer(t)

	// databricks: a Databricks-managed service principal, OAuth M2M with its secret.
	dbID, dbSecret := "dbsp-"+utilrand.String(8), "dose"+utilrand.String(32)
	fakes.idp.AddDatabricksClient(dbID, dbSecret)
	clientSecret("sp-databricks", dbID, dbSecret)
	cred("databricks", v1alpha1.DatabricksCredentialSpec{Host: workspaceURL,
		Databricks: &v1alpha1.DatabricksIdentity{ClientSecretRef: v1alpha1.ClientSecretReference{Name: "sp-databricks"}}})

	// azure: an Entra ID service principal with a client secret, at the default authority host.
	azID, azSecret := newGUID(), "Az~"+utilrand.String(32)
	fakes.idp.AddAzureApp(tenantID, azID, azSecret)
	clientSecret("sp-azure", azID, azSecret)
	cred("azure-secret", v1alpha1.DatabricksCredentialSpec{Host: workspaceURL,
		Azure: &v1alpha1.AzureIdentity{TenantID: tenantID, ClientSecretRef: &v1alpha1.ClientSecretReference{Name: "sp-azure"}}})

	// oauth2: a generic token endpoint, here the workspace's own, with HTTP Basic.
	o2ID, o2Secret := "o2sp-"+utilrand.String(8), "o2se"+utilrand.String(32)
	fakes.idp.AddDatabricksClient(o2ID, o2Secret)
	clientSecret("sp-oauth2", o2ID, o2Secret)
	cred("oauth2", v1alpha1.DatabricksCredentialSpec{Host: workspaceURL, Scopes: []string{"all-apis"},
		OAuth2: &v1alpha1.OAuth2Identity{TokenURL: workspaceURL + "/oidc/v1/token", ClientSecretRef: v1alpha1.ClientSecretReference{Name: "sp-oauth2"}}})

	// azure clientCertificateRef: a certificate uploaded to the app registration.
	certID := newGUID()
	certPEM, keyPEM := selfSignedCertificate(t, "dbtoken cluster test "+certID)
	if err := fakes.idp.AddAzureCertificate(tenantID, certID, certPEM); err != nil {
		t.Fatal(err)
	}
	create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sp-cert"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}})
	cred("azure-cert", v1alpha1.DatabricksCredentialSpec{Host: workspaceURL,
		Azure: &v1alpha1.AzureIdentity{TenantID: tenantID, ClientID: certID, ClientCertificateRef: &v1alpha1.ClientCertificateReference{Name: "sp-cert"}}})

	// azure workloadIdentity: a ServiceAccount token this cluster's API server signed, trusted by
	// a federated identity credential (issuer, subject, audience api://AzureADTokenExchange).
	wiID := newGUID()
	create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "wi-runner"}})
	if err := fakes.idp.AddAzureFederatedCredential(tenantID, wiID, issuer, "system:serviceaccount:"+ns+":wi-runner", "api://AzureADTokenExchange", jwks); err != nil {
		t.Fatal(err)
	}
	cred("azure-wi", v1alpha1.DatabricksCredentialSpec{Host: workspaceURL,
		Azure: &v1alpha1.AzureIdentity{TenantID: tenantID, ClientID: wiID, WorkloadIdentity: &v1alpha1.AzureWorkloadIdentity{ServiceAccountName: "wi-runner"}}})

	// federation: Databricks OAuth token federation with a ServiceAccount token of this cluster.
	fedID := newGUID()
	create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "fed-runner"}})
	if err := fakes.idp.AddFederationPolicy(idp.FederationPolicy{Issuer: issuer, Audiences: []string{federationAudience},
		Subject: "system:serviceaccount:" + ns + ":fed-runner", JWKS: jwks, ClientID: fedID}); err != nil {
		t.Fatal(err)
	}
	cred("federation", v1alpha1.DatabricksCredentialSpec{Host: workspaceURL,
		Federation: &v1alpha1.FederationIdentity{ServiceAccountName: "fed-runner", Audience: federationAudience, ClientID: fedID, ExpirationSeconds: 600}})

	return []string{"databricks", "azure-secret", "oauth2", "azure-cert", "azure-wi", "federation"}
}

// serviceAccountIssuer reads the cluster's ServiceAccount issuer and its keys from the API
// server's discovery endpoints, as an administrator registers them with Entra or Databricks.
func serviceAccountIssuer(t *testing.T) (string, []byte) {
	t.Helper()
	ctx := context.Background()
	b, err := cs.RESTClient().Get().AbsPath("/.well-known/openid-configuration").DoRaw(ctx)
	if err != nil {
		t.Fatalf("OIDC discovery: %v", err)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || doc.Issuer == "" {
		t.Fatalf("OIDC discovery: %v %s", err, b)
	}
	jwks, err := cs.RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	return doc.Issuer, jwks
}

// waitReady waits for Ready=True/TokenIssued and checks that the Secret holds a token that the
// identity provider issued and that has not expired.
func waitReady(t *testing.T, ns, name string, timeout time.Duration) *v1alpha1.DatabricksCredential {
	t.Helper()
	var c v1alpha1.DatabricksCredential
	eventually(t, timeout, ns+"/"+name+" Ready=True/TokenIssued", func() (bool, string) {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &c); err != nil {
			return false, err.Error()
		}
		cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady)
		if cond == nil {
			return false, "no Ready condition"
		}
		return cond.Status == metav1.ConditionTrue && cond.Reason == v1alpha1.ReasonTokenIssued,
			fmt.Sprintf("Ready=%s %s: %s", cond.Status, cond.Reason, cond.Message)
	})
	sec := secret(t, ns, c.Status.SecretName)
	if sec == nil {
		t.Fatalf("%s/%s is Ready but its Secret %q does not exist", ns, name, c.Status.SecretName)
	}
	claims, err := fakes.idp.ValidateToken(string(sec.Data[v1alpha1.DefaultTokenKey]))
	if err != nil {
		t.Fatalf("%s/%s: the Secret's token is not one the identity provider issued, or has expired: %v", ns, name, err)
	}
	logf(t, "%s/%s Ready: token %s for %s, expires %s", ns, name, fingerprint(string(sec.Data[v1alpha1.DefaultTokenKey])), claims.Subject, c.Status.ExpiresAt.Format(time.RFC3339))
	return &c
}

func secret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s, err := cs.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return s
}

// jwtExpiry reads the exp claim of a JWT without verifying it (the test only needs to know
// whether the token in a Secret is past its end, whoever checks it).
func jwtExpiry(tok string) (time.Time, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, fmt.Errorf("not a JWT (%d parts)", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, err
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(b, &c); err != nil || c.Exp == 0 {
		return time.Time{}, fmt.Errorf("no exp claim: %v", err)
	}
	return time.Unix(c.Exp, 0), nil
}

func newGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func selfSignedCertificate(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}
