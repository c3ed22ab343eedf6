package idp_test

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/dbtoken/databricks-token-operator/test/idp"
)

// A test starts the fake, registers a service principal, points the code under test at URL()
// with CACertPEM() as its CA bundle, and inspects what happened.
func Example() {
	srv, err := idp.Start(idp.Options{})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	srv.AddAzureApp("f4da2730-4463-4910-98a7-13d0523c0b2a", "my-app", "my-secret")

	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {"my-app"},
		"client_secret": {"my-secret"},
		"scope":         {idp.AzureDatabricksResourceID + "/.default"},
	}
	srv.FailNext(1, idp.Failure{Status: 503, RetryAfter: "1"}) // the first attempt hits an outage
	for i := 0; i < 2; i++ {
		resp, err := srv.Client().Post(srv.URL()+"/f4da2730-4463-4910-98a7-13d0523c0b2a/oauth2/v2.0/token",
			"application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, r := range srv.Requests() {
		fmt.Println(r.Endpoint, r.AuthMethod, r.SecretPresent, r.Status, r.Injected, r.IssuedToken != "")
	}
	// Output:
	// 503 text/html; charset=utf-8
	// 200 application/json; charset=utf-8
	// entra-token form true 503 true false
	// entra-token form true 200 false true
}
