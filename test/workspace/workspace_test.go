package workspace

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/test/idp"
)

const (
	tenantID   = "f4da2730-4463-4910-98a7-13d0523c0b2a"
	azClientID = "0b1c2d3e-2222-4f5a-8b9c-abcdefabcdef"
	azSecret   = "Abc8Q~workspace-test~XYZ"
	dbClientID = "6a1b7c0e-1111-4e5f-9a3b-0123456789ab"
	dbSecret   = "dose0123456789workspace"
)

// fakeClock drives the identity provider's iat/exp and its ValidateToken, so expiry is tested
// without waiting.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fixture struct {
	idp   *idp.Server
	ws    *Server
	clock *fakeClock
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	clk := &fakeClock{now: time.Now()}
	id, err := idp.Start(idp.Options{TokenLifetime: time.Hour, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(id.Close)
	id.AddAzureApp(tenantID, azClientID, azSecret)
	id.AddDatabricksClient(dbClientID, dbSecret)
	if opts.Validator == nil {
		opts.Validator = id
	}
	ws, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ws.Close)
	return &fixture{idp: id, ws: ws, clock: clk}
}

// entraToken obtains an Entra token for the AzureDatabricks resource, as the operator's azure
// block does.
func (f *fixture) entraToken(t *testing.T) string {
	t.Helper()
	return f.token(t, "/"+tenantID+"/oauth2/v2.0/token", url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {azClientID},
		"client_secret": {azSecret},
		"scope":         {idp.AzureDatabricksResourceID + "/.default"},
	})
}

// databricksToken obtains a Databricks OAuth token; its audience is the identity provider's URL.
func (f *fixture) databricksToken(t *testing.T) string {
	t.Helper()
	return f.token(t, "/oidc/v1/token", url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {dbClientID},
		"client_secret": {dbSecret},
		"scope":         {"all-apis"},
	})
}

func (f *fixture) token(t *testing.T, path string, form url.Values) string {
	t.Helper()
	resp, err := f.idp.Client().PostForm(f.idp.URL()+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		t.Fatalf("token request: status %d, err %v", resp.StatusCode, err)
	}
	return body.AccessToken
}

// call makes a request with the given Authorization header ("" for none) and returns the status
// and the decoded JSON body.
func (f *fixture) call(t *testing.T, method, path, authorization string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, f.ws.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := f.ws.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("body is not a JSON object: %q", raw)
	}
	return resp.StatusCode, body
}

func TestAuthentication(t *testing.T) {
	f := newFixture(t, Options{Audiences: []string{idp.AzureDatabricksResourceID}})
	entra := f.entraToken(t)
	databricks := f.databricksToken(t)

	other, err := idp.Start(idp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.AddAzureApp(tenantID, azClientID, azSecret)
	forged := (&fixture{idp: other}).entraToken(t) // right shape, signed by another key

	unauthenticated := map[string]any{"error_code": CodeUnauthenticated, "message": MessageUnauthenticated}
	invalid := map[string]any{"error_code": CodePermissionDenied, "message": MessageInvalidToken}

	tests := []struct {
		name          string
		authorization string
		wantStatus    int
		wantBody      map[string]any
		wantRejection string
	}{
		{name: "no header", wantStatus: 401, wantBody: unauthenticated, wantRejection: RejectNoCredential},
		{name: "basic auth", authorization: "Basic dXNlcjpwYXNz", wantStatus: 401, wantBody: unauthenticated, wantRejection: RejectNoCredential},
		{name: "empty bearer", authorization: "Bearer ", wantStatus: 401, wantBody: unauthenticated, wantRejection: RejectNoCredential},
		{name: "not a JWT", authorization: "Bearer dapi0123456789abcdef", wantStatus: 403, wantBody: invalid, wantRejection: RejectInvalid},
		{name: "forged signature", authorization: "Bearer " + forged, wantStatus: 403, wantBody: invalid, wantRejection: RejectInvalid},
		{name: "tampered payload", authorization: "Bearer " + tamper(entra), wantStatus: 403, wantBody: invalid, wantRejection: RejectInvalid},
		{name: "wrong audience", authorization: "Bearer " + databricks, wantStatus: 403, wantBody: invalid, wantRejection: RejectAudience},
		{name: "valid Entra token", authorization: "Bearer " + entra, wantStatus: 200},
		{name: "scheme is case-insensitive", authorization: "bearer " + entra, wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(f.ws.Requests())
			status, body := f.call(t, http.MethodGet, PathMe, tt.authorization)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %v)", status, tt.wantStatus, body)
			}
			if tt.wantBody != nil && !reflect.DeepEqual(body, tt.wantBody) {
				t.Errorf("body = %v, want %v", body, tt.wantBody)
			}
			if tt.wantStatus == 200 && body["userName"] != azClientID {
				t.Errorf("userName = %v, want the application ID %s", body["userName"], azClientID)
			}
			reqs := f.ws.Requests()
			if len(reqs) != n+1 {
				t.Fatalf("recorded %d requests, want %d", len(reqs), n+1)
			}
			got := reqs[n]
			if got.Rejection != tt.wantRejection || got.Status != tt.wantStatus || got.Path != PathMe || got.Method != http.MethodGet {
				t.Errorf("recorded %+v, want rejection %q and status %d", got, tt.wantRejection, tt.wantStatus)
			}
			if tt.wantStatus == 200 && got.Subject != azClientID {
				t.Errorf("recorded subject %q, want %q", got.Subject, azClientID)
			}
		})
	}
}

func TestExpiredToken(t *testing.T) {
	f := newFixture(t, Options{})
	tok := f.entraToken(t)
	if status, _ := f.call(t, http.MethodGet, PathMe, "Bearer "+tok); status != 200 {
		t.Fatalf("fresh token: status %d, want 200", status)
	}
	f.clock.Step(time.Hour + time.Second)
	status, body := f.call(t, http.MethodGet, PathMe, "Bearer "+tok)
	if status != 403 || body["error_code"] != CodePermissionDenied || body["message"] != MessageInvalidToken {
		t.Fatalf("expired token: %d %v, want 403 PERMISSION_DENIED", status, body)
	}
	reqs := f.ws.Requests()
	if got := reqs[len(reqs)-1].Rejection; got != RejectExpired {
		t.Errorf("rejection = %q, want %q", got, RejectExpired)
	}
}

func TestAnyAudienceByDefault(t *testing.T) {
	f := newFixture(t, Options{})
	status, body := f.call(t, http.MethodGet, PathMe, "Bearer "+f.databricksToken(t))
	if status != 200 || body["userName"] != dbClientID {
		t.Fatalf("Databricks token without an audience restriction: %d %v", status, body)
	}
}

func TestRoutes(t *testing.T) {
	f := newFixture(t, Options{WarehouseID: "0123456789abcdef", WarehouseName: "dbt"})
	auth := "Bearer " + f.entraToken(t)

	status, body := f.call(t, http.MethodGet, PathWarehouses, auth)
	list, _ := body["warehouses"].([]any)
	if status != 200 || len(list) != 1 {
		t.Fatalf("list warehouses: %d %v", status, body)
	}
	wh := list[0].(map[string]any)
	if wh["id"] != "0123456789abcdef" || wh["name"] != "dbt" || wh["state"] != "RUNNING" {
		t.Errorf("warehouse = %v", wh)
	}
	odbc, _ := wh["odbc_params"].(map[string]any)
	if odbc["path"] != f.ws.HTTPPath() || odbc["path"] != "/sql/1.0/warehouses/0123456789abcdef" || odbc["hostname"] != "127.0.0.1" {
		t.Errorf("odbc_params = %v", odbc)
	}

	if status, body := f.call(t, http.MethodGet, PathWarehouses+"/0123456789abcdef", auth); status != 200 || body["id"] != "0123456789abcdef" {
		t.Errorf("get warehouse: %d %v", status, body)
	}
	if status, body := f.call(t, http.MethodGet, PathWarehouses+"/ffff", auth); status != 404 || body["error_code"] != CodeResourceNotFound {
		t.Errorf("unknown warehouse: %d %v", status, body)
	}
	if status, body := f.call(t, http.MethodGet, "/api/2.0/clusters/list", auth); status != 404 || body["error_code"] != CodeEndpointNotFound {
		t.Errorf("unknown endpoint: %d %v", status, body)
	}
	if status, body := f.call(t, http.MethodPost, PathMe, auth); status != 404 || body["error_code"] != CodeEndpointNotFound {
		t.Errorf("POST on a GET endpoint: %d %v", status, body)
	}
	// Authentication comes first: an anonymous caller cannot probe for paths.
	if status, body := f.call(t, http.MethodGet, "/api/2.0/clusters/list", ""); status != 401 || body["error_code"] != CodeUnauthenticated {
		t.Errorf("unknown endpoint without a token: %d %v", status, body)
	}
	// The scim answer has the fields the CLI reads.
	status, body = f.call(t, http.MethodGet, PathMe, auth)
	if status != 200 || body["active"] != true || body["id"] == "" || body["displayName"] != azClientID {
		t.Errorf("Me = %d %v", status, body)
	}
}

func TestClientHelpers(t *testing.T) {
	f := newFixture(t, Options{})
	tok := f.entraToken(t)
	ctx := context.Background()

	user, err := CurrentUser(ctx, f.ws.Client(), f.ws.URL(), tok)
	if err != nil || user != azClientID {
		t.Fatalf("CurrentUser = %q, %v", user, err)
	}
	// profiles.yml style host: no scheme.
	state, err := WarehouseState(ctx, f.ws.Client(), f.ws.Hostname(), tok, f.ws.WarehouseID())
	if err != nil || state != "RUNNING" {
		t.Fatalf("WarehouseState = %q, %v", state, err)
	}

	_, err = CurrentUser(ctx, f.ws.Client(), f.ws.URL(), "garbage")
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 403 || apiErr.ErrorCode != CodePermissionDenied {
		t.Fatalf("bad token: err = %v, want an *APIError 403 PERMISSION_DENIED", err)
	}
	f.clock.Step(2 * time.Hour)
	_, err = CurrentUser(ctx, f.ws.Client(), f.ws.URL(), tok)
	if err == nil || strings.Contains(err.Error(), tok) {
		t.Fatalf("expired token: err = %v; want an error that does not quote the token", err)
	}
	_, err = WarehouseState(ctx, f.ws.Client(), f.ws.URL(), "", f.ws.WarehouseID())
	if !errors.As(err, &apiErr) || apiErr.Status != 401 || apiErr.ErrorCode != CodeUnauthenticated {
		t.Fatalf("no token: err = %v, want an *APIError 401 UNAUTHENTICATED", err)
	}
}

func TestTLSIsReal(t *testing.T) {
	f := newFixture(t, Options{})
	// A client that trusts only the system roots must refuse the certificate; the PEM and the
	// pool are what a consumer needs to trust it.
	if _, err := http.Get(f.ws.URL() + PathMe); err == nil {
		t.Fatal("a client with system roots accepted the self-signed certificate")
	}
	if !strings.Contains(string(f.ws.CACertPEM()), "BEGIN CERTIFICATE") {
		t.Errorf("CACertPEM is not PEM")
	}
	if !strings.HasPrefix(f.ws.URL(), "https://127.0.0.1:") || f.ws.Hostname() != strings.TrimPrefix(f.ws.URL(), "https://") {
		t.Errorf("URL %q, Hostname %q", f.ws.URL(), f.ws.Hostname())
	}
}

func TestStartNeedsValidator(t *testing.T) {
	if _, err := Start(Options{}); err == nil {
		t.Fatal("Start without a Validator succeeded")
	}
}

// tamper changes the payload and keeps the original signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = strings.TrimRight(parts[1], "=") + "x"
	return strings.Join(parts, ".")
}
