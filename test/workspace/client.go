package workspace

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// APIError is a non-2xx answer of the workspace API, with Databricks' error body.
type APIError struct {
	Status    int
	ErrorCode string
	Message   string
}

func (e *APIError) Error() string {
	if e.ErrorCode == "" {
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.ErrorCode, e.Message)
}

// CurrentUser calls GET {host}/api/2.0/preview/scim/v2/Me with the bearer token, as
// `databricks current-user me` does, and returns the userName (for a service principal, its
// application ID). host is a URL such as DATABRICKS_HOST. Errors never contain the token.
func CurrentUser(ctx context.Context, hc *http.Client, host, token string) (string, error) {
	var u scimUser
	if err := get(ctx, hc, host, PathMe, token, &u); err != nil {
		return "", err
	}
	if u.UserName == "" {
		return "", fmt.Errorf("GET %s: no userName in the answer", PathMe)
	}
	return u.UserName, nil
}

// WarehouseState calls GET {host}/api/2.0/sql/warehouses/{id} and returns the warehouse's
// state (e.g. RUNNING), the check a SQL client makes before it connects to an http_path.
func WarehouseState(ctx context.Context, hc *http.Client, host, token, id string) (string, error) {
	var w warehouse
	if err := get(ctx, hc, host, PathWarehouses+"/"+id, token, &w); err != nil {
		return "", err
	}
	return w.State, nil
}

func get(ctx context.Context, hc *http.Client, host, path, token string, out any) error {
	if !strings.Contains(host, "://") {
		host = "https://" + host // dbt's profiles.yml host has no scheme
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(host, "/")+path, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("GET %s: reading the answer: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Status: resp.StatusCode}
		var b apiError
		if json.Unmarshal(body, &b) == nil {
			e.ErrorCode, e.Message = b.ErrorCode, b.Message
		}
		return e
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: malformed answer: %w", path, err)
	}
	return nil
}
