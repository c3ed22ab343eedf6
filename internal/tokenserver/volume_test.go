package tokenserver

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/test/secretvolume"
)

// versionData is version n of a Secret whose token and expiry name the same n, so that a reader
// can tell whether it got both from one version.
func versionData(n int) map[string][]byte {
	return secretvolume.Strings(map[string]string{
		hostKey:    testHost,
		tokenKey:   fmt.Sprintf("token-%08d", n),
		expiresKey: time.Unix(int64(2_000_000_000+n), 0).UTC().Format(time.RFC3339),
	})
}

func versionOf(t *testing.T, s Snapshot) (int, int) {
	t.Helper()
	var tokN int
	if _, err := fmt.Sscanf(s.Token, "token-%d", &tokN); err != nil {
		t.Fatalf("unexpected token %q", s.Token)
	}
	exp, err := time.Parse(time.RFC3339, s.Expires)
	if err != nil {
		t.Fatalf("unexpected expiry %q", s.Expires)
	}
	return tokN, int(exp.Unix() - 2_000_000_000)
}

// TestReadIsOneVersionAcrossSwaps: while a writer publishes versions thousands of times a second,
// exactly as the kubelet does, every Read returns the token and the expiry of one and the same version, and
// never fails. A reader that opened the per-key symlinks instead (each resolving ..data again)
// mixes versions; the test counts those mixes as a control, so it shows the race is exercised.
func TestReadIsOneVersionAcrossSwaps(t *testing.T) {
	vol, err := secretvolume.New(t.TempDir(), versionData(0))
	if err != nil {
		t.Fatal(err)
	}
	v := Volume{Dir: vol.Path(), TokenKey: tokenKey, ExpiresKey: expiresKey, HostKey: hostKey}

	var stop atomic.Bool
	var wg sync.WaitGroup
	var written atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 1; !stop.Load(); n++ {
			if err := vol.Update(versionData(n)); err != nil {
				t.Error(err)
				return
			}
			written.Store(int64(n))
			// Thousands of swaps a second: far beyond the kubelet (one per sync period), yet
			// leaving room for a read to complete between two swaps.
			time.Sleep(200 * time.Microsecond)
		}
	}()

	deadline := time.Now().Add(2 * time.Second)
	var reads, naiveMixed, naiveFailed int
	for time.Now().Before(deadline) {
		s, err := v.Read()
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("Read failed during swaps after %d reads: %v", reads, err)
		}
		tokN, expN := versionOf(t, s)
		if tokN != expN {
			t.Fatalf("Read mixed versions: token of %d, expiry of %d", tokN, expN)
		}
		reads++

		// Control: read the two keys through their top-level symlinks.
		tb, err1 := os.ReadFile(filepath.Join(vol.Path(), tokenKey))
		eb, err2 := os.ReadFile(filepath.Join(vol.Path(), expiresKey))
		if err1 != nil || err2 != nil {
			naiveFailed++
			continue
		}
		naive := Snapshot{Token: string(tb), Expires: strings.TrimSpace(string(eb))}
		if a, b := versionOf(t, naive); a != b {
			naiveMixed++
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d consistent reads over %d versions; the per-key-symlink reader mixed versions %d times and failed %d times",
		reads, written.Load(), naiveMixed, naiveFailed)
	if written.Load() < 100 || reads < 100 {
		t.Fatalf("too little concurrency to mean anything: %d versions, %d reads", written.Load(), reads)
	}
}

// TestReadOneFileSystemVersion: the files come from the directory ..data points at, even when a
// per-key symlink points elsewhere.
func TestReadOneFileSystemVersion(t *testing.T) {
	vol, err := secretvolume.New(t.TempDir(), versionData(1))
	if err != nil {
		t.Fatal(err)
	}
	// A stray top-level file (not the kubelet's symlink) must not be what is read.
	link := filepath.Join(vol.Path(), tokenKey)
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(link, []byte("stray"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := Volume{Dir: vol.Path(), TokenKey: tokenKey, ExpiresKey: expiresKey}
	s, err := v.Read()
	if err != nil {
		t.Fatal(err)
	}
	if s.Token != "token-00000001" || s.Version != vol.Version() {
		t.Fatalf("read %q from %q, want token-00000001 from %q", s.Token, s.Version, vol.Version())
	}
}

// TestValidKey pins which key names the server opens.
func TestValidKey(t *testing.T) {
	for _, k := range []string{"DATABRICKS_TOKEN", "token", "a.b-c_d", "profiles.yml"} {
		if !ValidKey(k) {
			t.Errorf("ValidKey(%q) = false", k)
		}
	}
	for _, k := range []string{"", ".", "..", "..data", "a/b", "/etc/passwd", "a b", "ä", strings.Repeat("a", 254)} {
		if ValidKey(k) {
			t.Errorf("ValidKey(%q) = true", k)
		}
	}
}
