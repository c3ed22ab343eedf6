package longruns

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/databricks/databricks-sdk-go"
)

// The consumer is this test binary run again with consumerEnv set: a process of its own, so that
// the SDK reads its configuration from the environment exactly as in a pod, and so that
// SSL_CERT_FILE (read once per process by crypto/x509) makes it trust the test workspace.
const (
	consumerEnv         = "LONGRUNS_CONSUMER"
	consumerDurationEnv = "LONGRUNS_CONSUMER_DURATION"
	consumerIntervalEnv = "LONGRUNS_CONSUMER_INTERVAL"
)

// call is one workspace call of the consumer, one JSON line on its stdout.
type call struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	OK       bool      `json:"ok"`
	UserName string    `json:"userName,omitempty"`
	Error    string    `json:"error,omitempty"`
	Fatal    string    `json:"fatal,omitempty"`
}

// consumerMain calls CurrentUser.Me (GET /api/2.0/preview/scim/v2/Me, what `databricks
// current-user me` does) every interval for the duration, with a client built from the
// environment only.
func consumerMain() int {
	enc := json.NewEncoder(os.Stdout)
	duration, err1 := time.ParseDuration(os.Getenv(consumerDurationEnv))
	interval, err2 := time.ParseDuration(os.Getenv(consumerIntervalEnv))
	if err1 != nil || err2 != nil {
		_ = enc.Encode(call{Fatal: fmt.Sprintf("bad duration or interval: %v %v", err1, err2)})
		return 2
	}
	// No configuration in code: DATABRICKS_HOST, DATABRICKS_AUTH_TYPE and
	// DATABRICKS_METADATA_SERVICE_URL come from the environment.
	w, err := databricks.NewWorkspaceClient()
	if err != nil {
		_ = enc.Encode(call{Fatal: err.Error()})
		return 1
	}
	deadline := time.Now().Add(duration)
	for time.Now().Before(deadline) {
		c := call{Start: time.Now()}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		me, err := w.CurrentUser.Me(ctx)
		cancel()
		c.End = time.Now()
		if err != nil {
			c.Error = err.Error()
		} else {
			c.OK, c.UserName = true, me.UserName
		}
		if err := enc.Encode(c); err != nil {
			return 1
		}
		time.Sleep(interval)
	}
	return 0
}
