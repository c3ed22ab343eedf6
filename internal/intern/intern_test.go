package intern

import (
	"bytes"
	"fmt"
	"testing"
	"time"
	"unsafe"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestEqualValuesShareOneCopy(t *testing.T) {
	tab := NewTable(clocktesting.NewFakePassiveClock(time.Now()), time.Hour)
	a := tab.Bytes([]byte("eyJhbGciOiJSUzI1NiJ9.token"))
	b := tab.Bytes([]byte("eyJhbGciOiJSUzI1NiJ9.token"))
	if !bytes.Equal(a, b) || unsafe.SliceData(a) != unsafe.SliceData(b) {
		t.Fatal("equal contents must share one copy")
	}
	c := tab.Bytes([]byte("another"))
	if unsafe.SliceData(c) == unsafe.SliceData(a) || string(c) != "another" {
		t.Fatal("different contents must stay apart")
	}
	if s := tab.String("eyJhbGciOiJSUzI1NiJ9.token"); unsafe.StringData(s) != unsafe.SliceData(a) {
		t.Fatal("strings and bytes share the table")
	}
	if tab.Bytes(nil) != nil || tab.String("") != "" || tab.Len() != 2 {
		t.Fatalf("empty values are not stored; %d values held", tab.Len())
	}
}

func TestUnusedValuesAreForgotten(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Now())
	tab := NewTable(clk, time.Hour)
	old := tab.String(string([]byte("token-of-the-last-hour")))
	clk.SetTime(clk.Now().Add(2 * time.Hour))
	for i := range sweepEvery {
		tab.String(fmt.Sprint("current-", i%10))
	}
	if tab.Len() != 10 {
		t.Fatalf("want only the 10 values in use, got %d", tab.Len())
	}
	again := tab.String(string([]byte("token-of-the-last-hour")))
	if again != old {
		t.Fatal("a forgotten value is still equal when it comes back")
	}
}

// BenchmarkTableBytes is the cost the cache transform adds per target Secret for its token: a
// lookup of a value the table already holds (the common case: 100 Secrets per identity).
func BenchmarkTableBytes(b *testing.B) {
	tab := NewTable(clocktesting.NewFakePassiveClock(time.Now()), time.Hour)
	tokenBytes := bytes.Repeat([]byte("x"), 800)
	tab.Bytes(tokenBytes)
	b.ReportAllocs()
	for b.Loop() {
		tab.Bytes(tokenBytes)
	}
}
