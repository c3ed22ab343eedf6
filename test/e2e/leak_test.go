package e2e

import (
	"context"
	"fmt"
	"strings"

	eventsv1 "k8s.io/api/events/v1"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// needles returns what must never be written where people look: every client secret handed to
// a manager, and distinctive parts of every token any IdP issued. A JWT's header is the same for
// all tokens and public, so it is not a needle; its payload and signature are, as is a 24-byte
// suffix (a truncated token in a log line is still a leak).
func needles() []string {
	registryMu.Lock()
	out := append([]string(nil), clientSecrets...)
	servers := append(idps[:0:0], idps...)
	registryMu.Unlock()
	for _, s := range servers {
		for _, tok := range s.IssuedTokens() {
			out = append(out, tok)
			if len(tok) > 24 {
				out = append(out, tok[len(tok)-24:])
			}
			parts := strings.Split(tok, ".")
			for _, p := range parts[1:] {
				if len(p) >= 16 {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// leakIn describes the first kind of secret material found in text, "" if none. The value
// itself is withheld from the message.
func leakIn(text string) string {
	for _, n := range needles() {
		if strings.Contains(text, n) {
			return "an issued token or a client secret appears in the output (value withheld)"
		}
	}
	// A raw token response, as JSON or as JSON quoted inside a JSON log line.
	for _, raw := range []string{`"access_token"`, `\"access_token\"`} {
		if strings.Contains(text, raw) {
			return "a raw token response (" + raw + ") appears in the output"
		}
	}
	return ""
}

// leakInClusterObjects scans every Event and every credential's status in the cluster.
func leakInClusterObjects() string {
	ctx := context.Background()
	var b strings.Builder
	var events eventsv1.EventList
	if err := k8sClient.List(ctx, &events); err != nil {
		return fmt.Sprintf("listing events: %v", err)
	}
	for _, e := range events.Items {
		b.WriteString(e.Reason + " " + e.Note + "\n")
	}
	var creds v1alpha1.DatabricksCredentialList
	if err := k8sClient.List(ctx, &creds); err != nil {
		return fmt.Sprintf("listing credentials: %v", err)
	}
	for _, c := range creds.Items {
		fmt.Fprintf(&b, "%+v\n", c.Status)
	}
	if msg := leakIn(b.String()); msg != "" {
		return "events or credential status: " + msg
	}
	return ""
}
