package longruns

import (
	"flag"
	"os"
	"testing"
	"time"
)

// tokenLifetime is the test IdP's token lifetime; every other duration of the harness scales
// with it (see timingFor). `make test` uses the default; `make test-long-runs` passes 2m.
var tokenLifetime = flag.Duration("token-lifetime", 20*time.Second, "lifetime of the test IdP's tokens; the run lasts three lifetimes and a quarter")

func TestMain(m *testing.M) {
	if os.Getenv(consumerEnv) == "go-sdk" {
		os.Exit(consumerMain())
	}
	os.Exit(m.Run())
}
