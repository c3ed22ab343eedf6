package secret

import (
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// BenchmarkRender measures one Secret rendering, which every refresh and re-render performs:
// the default keys, and a dbt profiles.yml template.
func BenchmarkRender(b *testing.B) {
	issued := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	tok := "eyJhbGciOiJSUzI1NiJ9." + string(make([]byte, 900)) + ".sig"
	cases := map[string]v1alpha1.TargetSecret{
		"default-keys": {},
		"profiles-yml": {Data: map[string]string{
			"profiles.yml":     "analytics:\n  target: prod\n  outputs:\n    prod:\n      type: databricks\n      host: {{ .Hostname }}\n      http_path: /sql/1.0/warehouses/abc\n      schema: analytics\n      token: {{ .Token }}\n",
			"DATABRICKS_TOKEN": "{{ .Token }}",
		}},
	}
	for name, target := range cases {
		b.Run(name, func(b *testing.B) {
			in := Input{Host: "https://adb-1234567890123456.7.azuredatabricks.net", Token: tok, IssuedAt: issued,
				ExpiresAt: issued.Add(time.Hour), InputsHash: "abc", CredentialName: "dbt-prod", Target: target}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Render(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
