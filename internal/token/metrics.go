package token

import (
	"net/http"
	"time"
)

// Observer receives what the token package measures: each token-endpoint round trip and each
// shared-cache lookup. The manager's metrics collector implements it; the package registers
// nothing itself.
type Observer interface {
	ObserveRequest(kind Kind, resp *http.Response, err error, took time.Duration)
	ObserveCacheLookup(kind Kind, hit bool)
}

// noObserver discards every observation.
type noObserver struct{}

func (noObserver) ObserveRequest(Kind, *http.Response, error, time.Duration) {}
func (noObserver) ObserveCacheLookup(Kind, bool)                             {}
