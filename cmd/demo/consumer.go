package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"sort"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/test/workspace"
)

// consumer uses the target Secret the way a job pod does: the Databricks CLI and SDKs read the
// DATABRICKS_HOST and DATABRICKS_TOKEN environment variables (envFrom), dbt reads profiles.yml
// (a mounted key). Both must work with whatever token is in the Secret right now.
type consumer struct {
	hc *http.Client // trusts the workspace's certificate, as a pod trusts a real workspace
}

// dbtProfiles is the part of a dbt profiles.yml the consumer reads: profile → target → output.
type dbtProfiles map[string]struct {
	Target  string               `json:"target"`
	Outputs map[string]dbtOutput `json:"outputs"`
}

type dbtOutput struct {
	Type     string `json:"type"`
	Host     string `json:"host"`
	HTTPPath string `json:"http_path"`
	Catalog  string `json:"catalog"`
	Schema   string `json:"schema"`
	Token    string `json:"token"`
}

// connection is what one consumer run saw and got.
type connection struct {
	envHost     string
	envToken    string
	profile     string
	target      string
	output      dbtOutput
	user        string
	warehouseID string
	state       string
}

// connect reads the Secret's data and calls the workspace with it: the caller's identity with
// the environment's host and token (what `databricks current-user me` does), then the SQL
// warehouse behind profiles.yml's http_path with its host and token (dbt debug's connection
// check). The returned connection is filled as far as it got.
func (c *consumer) connect(ctx context.Context, data map[string][]byte) (connection, error) {
	var conn connection
	conn.envHost = string(data[v1alpha1.DefaultHostKey])
	conn.envToken = string(data[v1alpha1.DefaultTokenKey])
	if conn.envHost == "" || conn.envToken == "" {
		return conn, fmt.Errorf("the Secret lacks %s or %s", v1alpha1.DefaultHostKey, v1alpha1.DefaultTokenKey)
	}
	var profiles dbtProfiles
	if err := yaml.Unmarshal(data["profiles.yml"], &profiles); err != nil {
		return conn, fmt.Errorf("profiles.yml does not parse: %w", err)
	}
	if len(profiles) != 1 {
		return conn, fmt.Errorf("profiles.yml has %d profiles, want 1", len(profiles))
	}
	for name := range profiles {
		conn.profile = name
	}
	p := profiles[conn.profile]
	out, ok := p.Outputs[p.Target]
	if !ok {
		targets := make([]string, 0, len(p.Outputs))
		for t := range p.Outputs {
			targets = append(targets, t)
		}
		sort.Strings(targets)
		return conn, fmt.Errorf("profiles.yml: target %q is not among the outputs %v", p.Target, targets)
	}
	conn.target, conn.output = p.Target, out
	switch {
	case out.Type != "databricks":
		return conn, fmt.Errorf("profiles.yml: output type %q, want databricks", out.Type)
	case out.Host == "" || out.HTTPPath == "" || out.Token == "":
		return conn, errors.New("profiles.yml: host, http_path and token are required")
	case out.Token != conn.envToken:
		return conn, errors.New("profiles.yml and DATABRICKS_TOKEN hold different tokens")
	}

	// Let a call that started before the end of the demo finish: a failure must mean a bad
	// token, never an interrupted request.
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	user, err := workspace.CurrentUser(callCtx, c.hc, conn.envHost, conn.envToken)
	if err != nil {
		return conn, fmt.Errorf("with DATABRICKS_HOST/DATABRICKS_TOKEN: %w", err)
	}
	conn.user = user
	conn.warehouseID = path.Base(out.HTTPPath)
	state, err := workspace.WarehouseState(callCtx, c.hc, out.Host, out.Token, conn.warehouseID)
	if err != nil {
		return conn, fmt.Errorf("with profiles.yml: %w", err)
	}
	conn.state = state
	return conn, nil
}
