package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// TestRestartMakesNoTokenRequest is the one test whose manager watches all namespaces (no
// --namespaces), so it runs serially: Go runs it before the parallel tests start, and no other
// manager is running meanwhile.
func TestRestartMakesNoTokenRequest(t *testing.T) {
	ns := newNamespace(t, "e2e-restart")
	first := startManager(t, "before-restart")
	ca := newCAConfigMap(t, idpServer, ns)
	const n = 5
	clients := make([]string, n)
	for i := range n {
		sp := fmt.Sprintf("sp-%d", i)
		clients[i] = newClient(t, idpServer, ns, sp)
		newCredential(t, idpServer, ns, fmt.Sprintf("cred-%d", i), sp, ca, 0)
	}
	tokens := make([]string, n)
	for i := range n {
		name := fmt.Sprintf("cred-%d", i)
		waitTokenIssued(t, ns, name, 30*time.Second)
		tokens[i] = tokenOf(getSecret(t, ns, name))
		if _, err := idpServer.ValidateToken(tokens[i]); err != nil {
			t.Fatalf("%s: the Secret holds a token the IdP does not accept: %v", name, err)
		}
		if got := len(requestsFrom(idpServer, clients[i])); got != 1 {
			t.Fatalf("%s: %d token requests before the restart, want 1", name, got)
		}
	}

	first.stop(t)
	for i := range n {
		c := getCred(t, ns, fmt.Sprintf("cred-%d", i))
		c.Status = v1alpha1.DatabricksCredentialStatus{}
		if err := k8sClient.Status().Update(context.Background(), c); err != nil {
			t.Fatalf("wiping the status of %s: %v", c.Name, err)
		}
		if got := readyReason(getCred(t, ns, c.Name)); got != "none" {
			t.Fatalf("status of %s was not wiped: Ready is %s", c.Name, got)
		}
	}

	second := startManager(t, "after-restart")
	for i := range n {
		name := fmt.Sprintf("cred-%d", i)
		eventually(t, 30*time.Second, 100*time.Millisecond, name+" status restored", func() (bool, string) {
			c := getCred(t, ns, name)
			st := c.Status
			if r := readyReason(c); r != "True/"+v1alpha1.ReasonTokenIssued {
				return false, "Ready is " + r
			}
			if st.ExpiresAt == nil || st.NextRefreshTime == nil || st.LastRefreshTime == nil || st.SecretName != name || st.ObservedGeneration != c.Generation {
				return false, fmt.Sprintf("status incomplete: %+v", st)
			}
			return true, ""
		})
	}
	for i := range n {
		name := fmt.Sprintf("cred-%d", i)
		if got := len(requestsFrom(idpServer, clients[i])); got != 1 {
			t.Errorf("%s: %d token requests in total, want 1: the restart must keep a fresh token", name, got)
		}
		if tokenOf(getSecret(t, ns, name)) != tokens[i] {
			t.Errorf("%s: the token in the Secret changed across the restart", name)
		}
	}
	if got := second.count("token refreshed"); got != 0 {
		t.Errorf("the restarted manager logged %d refreshes, want 0", got)
	}
	second.stop(t)
}

func TestManagerBinaryIssuesAndRefreshes(t *testing.T) {
	t.Parallel()
	// A dedicated IdP: the short lifetime is server-wide.
	s := startIdP(t)
	s.SetTokenLifetime(6 * time.Second)
	ns := newNamespace(t, "e2e-refresh")
	mgr := startManager(t, "refresh", "--namespaces="+ns)
	clientID := newClient(t, s, ns, "dbt-sp")
	newCredential(t, s, ns, "dbt-prod", "dbt-sp", newCAConfigMap(t, s, ns), 3*time.Second)

	ok := t.Run("Ready with a valid token", func(t *testing.T) {
		waitTokenIssued(t, ns, "dbt-prod", 30*time.Second)
		sec := getSecret(t, ns, "dbt-prod")
		if sec == nil {
			t.Fatal("Ready=True but the target Secret does not exist")
		}
		if got := string(sec.Data["DATABRICKS_HOST"]); got != s.URL() {
			t.Errorf("DATABRICKS_HOST = %q, want %q", got, s.URL())
		}
		claims, err := s.ValidateToken(tokenOf(sec))
		if err != nil {
			t.Fatalf("the Secret holds a token the IdP does not accept: %v", err)
		}
		if claims.Subject != clientID {
			t.Errorf("token subject = %q, want %q", claims.Subject, clientID)
		}
	})
	if !ok {
		return
	}

	t.Run("kubectl wait", func(t *testing.T) {
		out, err := kubectl(t, "wait", "--for=condition=Ready", "dbcred/dbt-prod", "-n", ns, "--timeout=30s")
		if err != nil {
			t.Fatalf("kubectl wait: %v\n%s", err, out)
		}
		if !strings.Contains(out, "condition met") {
			t.Errorf("kubectl wait said %q", out)
		}
	})

	t.Run("refreshes before expiry", func(t *testing.T) {
		// 6 s tokens renewed 3 s before expiry: a new token about every 3 s, and the Secret never
		// holds one the IdP rejects.
		seen := map[string]bool{}
		deadline := time.Now().Add(12 * time.Second)
		for time.Now().Before(deadline) {
			sec := getSecret(t, ns, "dbt-prod")
			tok := tokenOf(sec)
			if _, err := s.ValidateToken(tok); err != nil {
				t.Fatalf("after %d tokens, the Secret held a token the IdP rejects: %v", len(seen), err)
			}
			seen[tok] = true
			time.Sleep(200 * time.Millisecond)
		}
		if len(seen) < 3 {
			t.Errorf("saw %d distinct tokens in 12s, want at least 3", len(seen))
		}
		if r := readyReason(getCred(t, ns, "dbt-prod")); r != "True/"+v1alpha1.ReasonTokenIssued {
			t.Errorf("Ready is %s after the refreshes", r)
		}
		if got, want := mgr.count("token refreshed"), len(seen); got < want {
			t.Errorf("manager logged %d refreshes, want at least %d", got, want)
		}
	})
	mgr.stop(t)
}

func TestLeaderElectionOnlyOneWrites(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "e2e-leader")
	args := []string{"--leader-elect", "--leader-election-namespace=default", "--namespaces=" + ns}
	replicas := []*managerProc{startManager(t, "replica-1", args...), startManager(t, "replica-2", args...)}
	clientID := newClient(t, idpServer, ns, "sp")
	newCredential(t, idpServer, ns, "cred", "sp", newCAConfigMap(t, idpServer, ns), 0)
	waitTokenIssued(t, ns, "cred", 45*time.Second)
	first := tokenOf(getSecret(t, ns, "cred"))

	var leader, follower *managerProc
	eventually(t, 10*time.Second, 100*time.Millisecond, "a replica to log the refresh", func() (bool, string) {
		a, b := replicas[0].count("token refreshed"), replicas[1].count("token refreshed")
		switch {
		case a == 1 && b == 0:
			leader, follower = replicas[0], replicas[1]
		case a == 0 && b == 1:
			leader, follower = replicas[1], replicas[0]
		default:
			return false, fmt.Sprintf("replica-1 logged %d refreshes, replica-2 %d", a, b)
		}
		return true, ""
	})
	if got := len(requestsFrom(idpServer, clientID)); got != 1 {
		t.Fatalf("%d token requests with two replicas, want exactly 1", got)
	}
	t.Logf("%s is the leader", leader.Name)

	leader.stop(t)
	rotateClientSecret(t, idpServer, ns, "sp", clientID)
	// The stopped leader released its Lease (LeaderElectionReleaseOnCancel); the follower
	// retries every 2 s, and at worst waits out the 15 s lease.
	eventually(t, 40*time.Second, 100*time.Millisecond, "the follower to mint a token with the rotated secret", func() (bool, string) {
		tok := tokenOf(getSecret(t, ns, "cred"))
		return tok != first, "the Secret still holds the first token"
	})
	second := tokenOf(getSecret(t, ns, "cred"))
	claims, err := idpServer.ValidateToken(second)
	if err != nil {
		t.Fatalf("the follower wrote a token the IdP rejects: %v", err)
	}
	if claims.Subject != clientID {
		t.Errorf("token subject = %q, want %q", claims.Subject, clientID)
	}
	if reqs := requestsFrom(idpServer, clientID); len(reqs) != 2 || reqs[1].Status != 200 {
		t.Errorf("token requests after the takeover: %+v, want 2 with the second answered 200", reqs)
	}
	eventually(t, 10*time.Second, 100*time.Millisecond, "the follower to log its refresh", func() (bool, string) {
		n := follower.count("token refreshed")
		return n == 1, fmt.Sprintf("%s logged %d refreshes", follower.Name, n)
	})
	waitTokenIssued(t, ns, "cred", 10*time.Second)
	follower.stop(t)
}

func TestNamespacesFlag(t *testing.T) {
	t.Parallel()
	nsA := newNamespace(t, "e2e-watched")
	nsB := newNamespace(t, "e2e-ignored")
	mgr := startManager(t, "namespaced", "--namespaces="+nsA)

	// The ignored namespace's credential exists first, so the manager has had every chance to
	// see it by the time the watched one is Ready.
	clientB := newClient(t, idpServer, nsB, "sp")
	newCredential(t, idpServer, nsB, "cred", "sp", newCAConfigMap(t, idpServer, nsB), 0)
	newClient(t, idpServer, nsA, "sp")
	newCredential(t, idpServer, nsA, "cred", "sp", newCAConfigMap(t, idpServer, nsA), 0)

	waitTokenIssued(t, nsA, "cred", 30*time.Second)
	consistently(t, 3*time.Second, 200*time.Millisecond, "the other namespace being ignored", func() (bool, string) {
		c := getCred(t, nsB, "cred")
		if len(c.Status.Conditions) > 0 || c.Status.ObservedGeneration != 0 || c.Status.SecretName != "" {
			return false, fmt.Sprintf("%s/cred got a status: %+v", nsB, c.Status)
		}
		if getSecret(t, nsB, "cred") != nil {
			return false, fmt.Sprintf("a target Secret appeared in %s", nsB)
		}
		if n := len(requestsFrom(idpServer, clientB)); n != 0 {
			return false, fmt.Sprintf("the IdP saw %d requests from %s's client", n, nsB)
		}
		return true, ""
	})
	if strings.Contains(mgr.logs.String(), `"namespace":"`+nsB+`"`) {
		t.Errorf("the manager logged about %s, which it must not watch", nsB)
	}
	mgr.stop(t)
}

// TestStandbyIsReadyAtOnceAndTakesOverWarm starts a second replica next to a leader: it must
// pass /readyz within seconds (its caches start at manager start, not when it leads). Then the
// leader is killed (SIGKILL: no Lease release) and the standby, once it holds the Lease, refreshes
// without first waiting for caches.
func TestStandbyIsReadyAtOnceAndTakesOverWarm(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "e2e-standby")
	args := []string{"--leader-elect", "--leader-election-namespace=" + ns, "--namespaces=" + ns}
	leader := startManager(t, "leader", args...)
	clientID := newClient(t, idpServer, ns, "sp")
	newCredential(t, idpServer, ns, "cred", "sp", newCAConfigMap(t, idpServer, ns), 0)
	waitTokenIssued(t, ns, "cred", 45*time.Second)
	first := tokenOf(getSecret(t, ns, "cred"))

	standby := startManager(t, "standby", args...)
	readyIn := standby.ReadyAt.Sub(standby.Started)
	t.Logf("standby /readyz 200 after %s", readyIn.Round(time.Millisecond))
	// Generous: the figure is reported; the bound only catches a standby that waits to lead.
	if readyIn > 20*time.Second {
		t.Fatalf("the standby became ready after %s", readyIn)
	}
	if n := standby.count("Successfully acquired lease"); n != 0 {
		t.Fatalf("the standby leads while the leader runs")
	}

	leader.Kill()
	killed := time.Now()
	rotateClientSecret(t, idpServer, ns, "sp", clientID)
	eventually(t, 60*time.Second, 100*time.Millisecond, "the standby to mint a token with the rotated secret", func() (bool, string) {
		return tokenOf(getSecret(t, ns, "cred")) != first, "the Secret still holds the first token"
	})
	took := time.Since(killed)
	// Log times are whole seconds.
	acquired, refreshed := standby.lineTime(t, "Successfully acquired lease"), standby.lineTime(t, "token refreshed")
	t.Logf("after SIGKILL of the leader: lease acquired after %s, first refresh %s after that (%s in all)",
		acquired.Sub(killed).Round(time.Millisecond), refreshed.Sub(acquired).Round(time.Millisecond), took.Round(time.Millisecond))
	if gap := refreshed.Sub(acquired); gap > 3*time.Second {
		t.Errorf("the new leader took %s from the Lease to its first refresh: it waited for something", gap)
	}
	if _, err := idpServer.ValidateToken(tokenOf(getSecret(t, ns, "cred"))); err != nil {
		t.Fatalf("the new leader wrote a token the IdP rejects: %v", err)
	}
	standby.stop(t)
}
