package intern

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"unsafe"
)

func TestEqualValuesShareOneCopy(t *testing.T) {
	tab := NewTable()
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
	runtime.KeepAlive(a)
	runtime.KeepAlive(c)
}

func TestSharingSurvivesGarbageCollection(t *testing.T) {
	tab := NewTable()
	held := tab.String(string(bytes.Repeat([]byte("t"), 900)))
	runtime.GC()
	runtime.GC()
	again := tab.String(string(bytes.Repeat([]byte("t"), 900)))
	if unsafe.StringData(again) != unsafe.StringData(held) {
		t.Fatal("a value still in use must stay shared across collections")
	}
	runtime.KeepAlive(held)
}

// TestOldVersionsAreNotKept is the bound on tenant-driven growth: 120 versions of a 900 KiB value,
// each dropped by its user, leave nothing in the table once collected.
func TestOldVersionsAreNotKept(t *testing.T) {
	tab := NewTable()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 120 {
		v := bytes.Repeat([]byte{byte('a' + i%26)}, 900<<10)
		v[0] = byte(i)
		_ = tab.Bytes(v) // the "object" that used it is replaced by the next version
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := tab.Len(); n != 0 {
		t.Fatalf("%d old versions are still held", n)
	}
	for i := range sweepEvery {
		tab.String(fmt.Sprint("current-", i%10))
	}
	if n := tab.Entries(); n > 10 {
		t.Fatalf("%d entries after a sweep, want only the values in use", n)
	}
	// 120 × 900 KiB is 105 MiB; whatever the collector's timing, far less than that remains.
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 20<<20 {
		t.Fatalf("the heap grew by %d MiB after the versions were dropped", grown>>20)
	}
}

// BenchmarkTableBytes is the cost the cache transform adds per target Secret for its token: a
// lookup of a value the table already holds (the common case: 100 Secrets per identity).
func BenchmarkTableBytes(b *testing.B) {
	tab := NewTable()
	tokenBytes := bytes.Repeat([]byte("x"), 800)
	keep := tab.Bytes(tokenBytes)
	b.ReportAllocs()
	for b.Loop() {
		tab.Bytes(tokenBytes)
	}
	runtime.KeepAlive(keep)
}
