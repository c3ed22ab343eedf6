package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pkiFiles writes a fresh cluster CA, the serving certificates of the API server and kubelet, a
// client certificate per component, and the ServiceAccount signing key. Every `up` makes new
// ones: nothing outlives the cluster that could be trusted by accident.
func pkiFiles(c *config) error {
	dir := c.path("pki")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "dbtoken-local-cluster-ca-" + c.Name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if err := writePEM(c.pki("ca.crt"), "CERTIFICATE", caDER); err != nil {
		return err
	}

	issue := func(file, cn string, orgs []string, usage x509.ExtKeyUsage, ips []string, dns []string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: cn, Organization: orgs},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(30 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     dns,
		}
		for _, ip := range ips {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		if err := writePEM(c.pki(file+".crt"), "CERTIFICATE", der); err != nil {
			return err
		}
		return writeKey(c.pki(file+".key"), key)
	}
	server, client := x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth
	for _, cert := range []struct {
		file, cn string
		orgs     []string
		usage    x509.ExtKeyUsage
		ips, dns []string
	}{
		{"apiserver", "kube-apiserver", nil, server, []string{c.NodeIP, c.ServiceIP, "127.0.0.1"},
			[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"}},
		{"kubelet-serving", c.nodeName(), nil, server, []string{c.NodeIP}, []string{c.nodeName()}},
		{"admin", "local-cluster-admin", []string{"system:masters"}, client, nil, nil},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, client, nil, nil},
		{"kubelet", "system:node:" + c.nodeName(), []string{"system:nodes"}, client, nil, nil},
		{"controller-manager", "system:kube-controller-manager", nil, client, nil, nil},
		{"scheduler", "system:kube-scheduler", nil, client, nil, nil},
	} {
		if err := issue(cert.file, cert.cn, cert.orgs, cert.usage, cert.ips, cert.dns); err != nil {
			return fmt.Errorf("certificate %s: %w", cert.file, err)
		}
	}

	// ServiceAccount tokens are signed RS256, as most clusters do (and what identity providers
	// that verify Kubernetes tokens, Entra and Databricks federation among them, expect).
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	if err := writeKey(c.pki("sa.key"), saKey); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	if err := writePEM(c.pki("sa.pub"), "PUBLIC KEY", pub); err != nil {
		return err
	}

	for _, kc := range []struct{ file, cert string }{
		{"admin.kubeconfig", "admin"},
		{"controller-manager.kubeconfig", "controller-manager"},
		{"scheduler.kubeconfig", "scheduler"},
		{"kubelet.kubeconfig", "kubelet"},
	} {
		if err := writeKubeconfig(c, c.path(kc.file), kc.cert); err != nil {
			return err
		}
	}
	return nil
}

// writeKubeconfig writes a kubeconfig that embeds the CA and the component's client certificate.
func writeKubeconfig(c *config, file, cert string) error {
	ca, err := os.ReadFile(c.pki("ca.crt"))
	if err != nil {
		return err
	}
	crt, err := os.ReadFile(c.pki(cert + ".crt"))
	if err != nil {
		return err
	}
	key, err := os.ReadFile(c.pki(cert + ".key"))
	if err != nil {
		return err
	}
	b64 := func(b []byte) string { return base64Std(b) }
	doc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: %[2]s
    certificate-authority-data: %[3]s
users:
- name: %[4]s
  user:
    client-certificate-data: %[5]s
    client-key-data: %[6]s
contexts:
- name: %[1]s
  context:
    cluster: %[1]s
    user: %[4]s
current-context: %[1]s
`, c.netns(), c.apiServerURL(), b64(ca), cert, b64(crt), b64(key))
	return os.WriteFile(file, []byte(doc), 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func writePEM(file, typ string, der []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	return os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func writeKey(file string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(file, "PRIVATE KEY", der)
}
