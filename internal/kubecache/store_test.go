package kubecache

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestCredentialStoreDetectsACacheBehindOurWrite(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "c"}
	clk := clocktesting.NewFakePassiveClock(time.Now())
	s := NewCredentialStore(clk, nil, nil, nil)
	if s.stale(key, "1") {
		t.Fatal("stale without any write")
	}
	s.patched(key, "3", "3")
	if s.stale(key, "3") {
		t.Fatal("a patch that changed nothing on the server cannot make the cache stale")
	}
	s.patched(key, "3", "4")
	if !s.stale(key, "3") {
		t.Fatal("the cache still shows the version our write replaced")
	}
	if !s.stale(key, "3") {
		t.Fatal("still behind on a second look")
	}
	if s.stale(key, "4") {
		t.Fatal("the cache caught up")
	}
	if s.stale(key, "3") {
		t.Fatal("once caught up, the entry is gone")
	}

	s.patched(key, "5", "6")
	clk.SetTime(clk.Now().Add(statusWriteMemory + time.Second))
	if s.stale(key, "5") {
		t.Fatal("a cache is not taken for stale long after the write; the entry expires")
	}
	other := types.NamespacedName{Namespace: "ns", Name: "other"}
	s.patched(other, "1", "2")
	clk.SetTime(clk.Now().Add(statusWriteMemory + time.Second))
	for i := range sweepEvery {
		s.patched(types.NamespacedName{Namespace: "ns", Name: "c"}, "x", fmt.Sprint(i))
	}
	if _, ok := s.replaced[other]; ok {
		t.Fatal("old entries are swept while writes go on")
	}
}
