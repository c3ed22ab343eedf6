package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/dbtoken/databricks-token-operator/test/idp"
	"github.com/dbtoken/databricks-token-operator/test/workspace"
)

// The public names the operator and the consumer pods dial. The test's DNS server resolves them
// to the node, where the front server presents a certificate for them signed by the test CA. The
// operator's default --allowed-token-hosts (*.azuredatabricks.net, login.microsoftonline.com, ...)
// lets them through: no manifest needs an edit for the test.
const (
	entraHost     = "login.microsoftonline.com"
	workspaceHost = "adb-1234567890123456.7.azuredatabricks.net"
	workspaceURL  = "https://" + workspaceHost
)

// tokenLifetime is what the identity provider issues: short, so that refreshes happen during the
// test (every ~60 s with the default renewBefore of half the lifetime).
const tokenLifetime = 2 * time.Minute

// fakeEnv is the outside world of the cluster: Entra ID and a Databricks workspace (token
// endpoints from test/idp, REST API from test/workspace) behind one TLS listener on the node's
// port 443, and DNS on its port 53.
type fakeEnv struct {
	idp       *idp.Server
	workspace *workspace.Server
	// validations records every token the workspace checked, by fingerprint.
	validations *validationLog
	caPEM       []byte // the test CA: what caBundleRef and the consumer's SSL_CERT_FILE hold
	https       *http.Server
	dns         net.PacketConn
}

var fakes *fakeEnv

func startFakes() (*fakeEnv, error) {
	id, err := idp.Start(idp.Options{TokenLifetime: tokenLifetime})
	if err != nil {
		return nil, err
	}
	vl := &validationLog{next: id, byFP: map[string]*tokenChecks{}}
	ws, err := workspace.Start(workspace.Options{Validator: vl})
	if err != nil {
		id.Close()
		return nil, err
	}
	e := &fakeEnv{idp: id, workspace: ws, validations: vl}
	cert, caPEM, err := testCertificate([]string{entraHost, workspaceHost})
	if err != nil {
		e.close()
		return nil, err
	}
	e.caPEM = caPEM
	// Both servers are used as handlers; their own 127.0.0.1 listeners stay idle. The identity
	// provider builds issuers and assertion audiences from the request's Host, which is the
	// public name here, as at the real providers.
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := strings.Cut(r.Host, ":")
		switch {
		case host == entraHost, host == workspaceHost && strings.HasPrefix(r.URL.Path, "/oidc/"):
			id.ServeHTTP(w, r)
		case host == workspaceHost:
			ws.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
	ln, err := net.Listen("tcp", net.JoinHostPort(nodeIP, "443"))
	if err != nil {
		e.close()
		return nil, fmt.Errorf("listening on the node's port 443 (is the test running inside the cluster's network namespace?): %w", err)
	}
	e.https = &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = e.https.ServeTLS(ln, "", "") }()

	if e.dns, err = net.ListenPacket("udp", net.JoinHostPort(nodeIP, "53")); err != nil {
		e.close()
		return nil, fmt.Errorf("listening on the node's port 53: %w", err)
	}
	go serveDNS(e.dns, netip.MustParseAddr(nodeIP), []string{entraHost, workspaceHost})
	return e, nil
}

func (e *fakeEnv) close() {
	if e.https != nil {
		_ = e.https.Close()
	}
	if e.dns != nil {
		_ = e.dns.Close()
	}
	if e.workspace != nil {
		e.workspace.Close()
	}
	if e.idp != nil {
		e.idp.Close()
	}
}

// validationLog is the workspace's token validator (the identity provider) with a record of what
// it was asked: for each token, by fingerprint, how often it was accepted and refused, so that a
// test can tell that every call of a client was made with a token the identity provider
// considered valid at that moment.
type validationLog struct {
	next workspace.TokenValidator

	mu   sync.Mutex
	byFP map[string]*tokenChecks
}

// tokenChecks counts the workspace's checks of one token.
type tokenChecks struct {
	accepted, refused int
	lastRefusal       string
}

func (v *validationLog) ValidateToken(tok string) (idp.Claims, error) {
	claims, err := v.next.ValidateToken(tok)
	fp := fingerprint(tok)
	v.mu.Lock()
	defer v.mu.Unlock()
	c := v.byFP[fp]
	if c == nil {
		c = &tokenChecks{}
		v.byFP[fp] = c
	}
	if err != nil {
		c.refused++
		c.lastRefusal = fmt.Sprintf("%s at %s", err, time.Now().Format("15:04:05.000"))
	} else {
		c.accepted++
	}
	return claims, err
}

// checks returns the workspace's checks of the token with fingerprint fp.
func (v *validationLog) checks(fp string) tokenChecks {
	v.mu.Lock()
	defer v.mu.Unlock()
	if c := v.byFP[fp]; c != nil {
		return *c
	}
	return tokenChecks{}
}

// serveDNS answers A queries for names with addr, AAAA queries for them with no record, and
// anything else with NXDOMAIN: just enough for Go's resolver (the operator's, the consumer's).
func serveDNS(pc net.PacketConn, addr netip.Addr, names []string) {
	known := map[string]bool{}
	for _, n := range names {
		known[strings.ToLower(n)+"."] = true
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		resp := dnsmessage.Message{
			Header:    dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true},
			Questions: []dnsmessage.Question{q},
		}
		switch name := strings.ToLower(q.Name.String()); {
		case !known[name]:
			resp.Header.RCode = dnsmessage.RCodeNameError
		case q.Type == dnsmessage.TypeA:
			resp.Answers = []dnsmessage.Resource{{
				Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5},
				Body:   &dnsmessage.AResource{A: addr.As4()},
			}}
		}
		out, err := resp.Pack()
		if err != nil {
			continue
		}
		_, _ = pc.WriteTo(out, from)
	}
}

// testCertificate makes a CA and a serving certificate for names, signed by it.
func testCertificate(names []string) (tls.Certificate, []byte, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dbtoken cluster test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		DNSNames:     names,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	if len(names) == 0 {
		return tls.Certificate{}, nil, errors.New("no names")
	}
	return tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
