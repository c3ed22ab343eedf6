package secret

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// Fixed inputs; nothing here reads the wall clock.
var (
	issuedAt  = time.Date(2026, time.November, 28, 18, 0, 0, 0, time.UTC)
	expiresAt = issuedAt.Add(time.Hour)
)

const (
	azureHost = "https://adb-1234567890123456.7.azuredatabricks.net/"
	testToken = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2VuLXBheWxvYWQ.c2lnbmF0dXJl"
)

func input(target v1alpha1.TargetSecret) Input {
	return Input{
		Host:           azureHost,
		Token:          testToken,
		IssuedAt:       issuedAt,
		ExpiresAt:      expiresAt,
		InputsHash:     "inputs-hash-1",
		CredentialName: "dbt-prod",
		Target:         target,
	}
}

func TestRender(t *testing.T) {
	tests := map[string]struct {
		in              Input
		wantData        map[string]string
		wantLabels      map[string]string
		wantAnnotations map[string]string // checked in addition to ours
	}{
		"default keys, trailing slash dropped": {
			in: input(v1alpha1.TargetSecret{}),
			wantData: map[string]string{
				v1alpha1.DefaultHostKey:      "https://adb-1234567890123456.7.azuredatabricks.net",
				v1alpha1.DefaultTokenKey:     testToken,
				v1alpha1.DefaultExpiresAtKey: "2026-11-28T19:00:00Z",
			},
			wantLabels: map[string]string{v1alpha1.LabelCredential: "dbt-prod"},
		},
		"default keys, several trailing slashes dropped": {
			in: func() Input { in := input(v1alpha1.TargetSecret{}); in.Host = "https://127.0.0.1:8443///"; return in }(),
			wantData: map[string]string{
				v1alpha1.DefaultHostKey:      "https://127.0.0.1:8443",
				v1alpha1.DefaultTokenKey:     testToken,
				v1alpha1.DefaultExpiresAtKey: "2026-11-28T19:00:00Z",
			},
			wantLabels: map[string]string{v1alpha1.LabelCredential: "dbt-prod"},
		},
		"default keys, host without slash kept": {
			in: func() Input {
				in := input(v1alpha1.TargetSecret{})
				in.Host = "https://dbc-a1b2.cloud.databricks.com"
				return in
			}(),
			wantData: map[string]string{
				v1alpha1.DefaultHostKey:      "https://dbc-a1b2.cloud.databricks.com",
				v1alpha1.DefaultTokenKey:     testToken,
				v1alpha1.DefaultExpiresAtKey: "2026-11-28T19:00:00Z",
			},
			wantLabels: map[string]string{v1alpha1.LabelCredential: "dbt-prod"},
		},
		"empty data map means default keys": {
			in: input(v1alpha1.TargetSecret{Data: map[string]string{}}),
			wantData: map[string]string{
				v1alpha1.DefaultHostKey:      "https://adb-1234567890123456.7.azuredatabricks.net",
				v1alpha1.DefaultTokenKey:     testToken,
				v1alpha1.DefaultExpiresAtKey: "2026-11-28T19:00:00Z",
			},
			wantLabels: map[string]string{v1alpha1.LabelCredential: "dbt-prod"},
		},
		"templates with every field": {
			in: input(v1alpha1.TargetSecret{Data: map[string]string{
				"token":      "{{ .Token }}",
				"host":       "{{ .Host }}",
				"hostname":   "{{ .Hostname }}",
				"expires-at": "{{ .ExpiresAt }}",
			}}),
			wantData: map[string]string{
				"token":      testToken,
				"host":       "https://adb-1234567890123456.7.azuredatabricks.net",
				"hostname":   "adb-1234567890123456.7.azuredatabricks.net",
				"expires-at": "2026-11-28T19:00:00Z",
			},
			wantLabels: map[string]string{v1alpha1.LabelCredential: "dbt-prod"},
		},
		"exactly the rendered keys": {
			in: input(v1alpha1.TargetSecret{Data: map[string]string{
				"profiles.yml": "databricks_demo:\n  target: prod\n  outputs:\n    prod:\n      type: databricks\n" +
					"      host: {{ .Hostname }}\n      token: {{ .Token }}\n",
				v1alpha1.DefaultTokenKey: "{{ .Token }}",
			}}),
			wantData: map[string]string{
				"profiles.yml": "databricks_demo:\n  target: prod\n  outputs:\n    prod:\n      type: databricks\n" +
					"      host: adb-1234567890123456.7.azuredatabricks.net\n      token: " + testToken + "\n",
				v1alpha1.DefaultTokenKey: testToken,
			},
			wantLabels: map[string]string{v1alpha1.LabelCredential: "dbt-prod"},
		},
		"static and empty templates": {
			in:         input(v1alpha1.TargetSecret{Data: map[string]string{"static": "no actions", "empty": ""}}),
			wantData:   map[string]string{"static": "no actions", "empty": ""},
			wantLabels: map[string]string{v1alpha1.LabelCredential: "dbt-prod"},
		},
		"builtins within budget": {
			in: input(v1alpha1.TargetSecret{Data: map[string]string{
				"quoted": `{{ printf "%q" .Hostname }}`,
				"json":   `{"host": "{{ js .Host }}"}`,
				"prefix": `{{ slice .Host 0 8 }}`,
				"len":    `{{ len .Hostname | print }}`,
				"if":     `{{ if eq .Hostname "adb-1234567890123456.7.azuredatabricks.net" }}azure{{ else }}other{{ end }}`,
			}}),
			wantData: map[string]string{
				"quoted": `"adb-1234567890123456.7.azuredatabricks.net"`,
				"json":   `{"host": "https://adb-1234567890123456.7.azuredatabricks.net"}`,
				"prefix": "https://",
				"len":    "42",
				"if":     "azure",
			},
			wantLabels: map[string]string{v1alpha1.LabelCredential: "dbt-prod"},
		},
		"target labels and annotations copied, ours win": {
			in: input(v1alpha1.TargetSecret{
				Labels: map[string]string{"team": "analytics", v1alpha1.LabelCredential: "someone-else"},
				Annotations: map[string]string{
					"reloader.stakater.com/match":  "true",
					v1alpha1.AnnotationExpiresAt:   "2099-01-01T00:00:00Z",
					v1alpha1.AnnotationInputsHash:  "forged",
					v1alpha1.AnnotationDataHash:    "forged",
					v1alpha1.AnnotationIssuedAt:    "forged",
					"example.com/unrelated-string": "kept",
				},
			}),
			wantData: map[string]string{
				v1alpha1.DefaultHostKey:      "https://adb-1234567890123456.7.azuredatabricks.net",
				v1alpha1.DefaultTokenKey:     testToken,
				v1alpha1.DefaultExpiresAtKey: "2026-11-28T19:00:00Z",
			},
			wantLabels: map[string]string{"team": "analytics", v1alpha1.LabelCredential: "dbt-prod"},
			wantAnnotations: map[string]string{
				"reloader.stakater.com/match":  "true",
				"example.com/unrelated-string": "kept",
			},
		},
		"times in another zone with nanoseconds are written as UTC seconds": {
			in: func() Input {
				in := input(v1alpha1.TargetSecret{Data: map[string]string{"exp": "{{ .ExpiresAt }}"}})
				cet := time.FixedZone("CET", 3600)
				in.IssuedAt = time.Date(2026, time.November, 28, 19, 0, 0, 999_999_999, cet)
				in.ExpiresAt = time.Date(2026, time.November, 28, 20, 0, 0, 999_999_999, cet)
				return in
			}(),
			wantData:   map[string]string{"exp": "2026-11-28T19:00:00Z"},
			wantLabels: map[string]string{v1alpha1.LabelCredential: "dbt-prod"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Render(tc.in)
			if err != nil {
				t.Fatalf("Render() error = %v", err)
			}
			if len(got.Data) != len(tc.wantData) {
				t.Errorf("Render() data keys = %v, want exactly %v", slices.Sorted(maps.Keys(got.Data)), slices.Sorted(maps.Keys(tc.wantData)))
			}
			for k, want := range tc.wantData {
				if v, ok := got.Data[k]; !ok || string(v) != want {
					t.Errorf("Render() data[%q] = %q (present %v), want %q", k, v, ok, want)
				}
			}
			if !maps.Equal(got.Labels, tc.wantLabels) {
				t.Errorf("Render() labels = %v, want %v", got.Labels, tc.wantLabels)
			}
			wantAnn := maps.Clone(tc.wantAnnotations)
			if wantAnn == nil {
				wantAnn = map[string]string{}
			}
			wantAnn[v1alpha1.AnnotationIssuedAt] = FormatTime(tc.in.IssuedAt)
			wantAnn[v1alpha1.AnnotationExpiresAt] = FormatTime(tc.in.ExpiresAt)
			wantAnn[v1alpha1.AnnotationInputsHash] = tc.in.InputsHash
			wantAnn[v1alpha1.AnnotationDataHash] = DataHash(tc.in.Host, tc.in.Target, got.Data)
			if !maps.Equal(got.Annotations, wantAnn) {
				t.Errorf("Render() annotations = %v, want %v", got.Annotations, wantAnn)
			}
			if tc.in.IssuedAt.Equal(issuedAt) && got.Annotations[v1alpha1.AnnotationExpiresAt] != "2026-11-28T19:00:00Z" {
				t.Errorf("expires-at annotation = %q", got.Annotations[v1alpha1.AnnotationExpiresAt])
			}
		})
	}
}

// TestRenderDoesNotAliasTarget checks that the returned maps are fresh: the controller may mutate
// them (or the spec) without one affecting the other.
func TestRenderDoesNotAliasTarget(t *testing.T) {
	target := v1alpha1.TargetSecret{Labels: map[string]string{"a": "1"}, Annotations: map[string]string{"b": "2"}}
	got, err := Render(input(target))
	if err != nil {
		t.Fatal(err)
	}
	got.Labels["a"] = "changed"
	got.Annotations["b"] = "changed"
	if target.Labels["a"] != "1" || target.Annotations["b"] != "2" {
		t.Errorf("Render() returned maps aliasing the target spec: %v %v", target.Labels, target.Annotations)
	}
	if _, ok := target.Labels[v1alpha1.LabelCredential]; ok {
		t.Errorf("Render() wrote into target.Labels")
	}
}

func TestRenderErrors(t *testing.T) {
	tests := map[string]struct {
		in          Input
		wantKey     string // "" means: not a *TemplateError
		wantIs      error  // optional errors.Is target
		wantMessage string // substring of Error()
	}{
		"missing key": {
			in:          input(v1alpha1.TargetSecret{Data: map[string]string{"t": "{{ .Tokn }}"}}),
			wantKey:     "t",
			wantMessage: `map has no entry for key "Tokn"`,
		},
		"lower-case field": {
			in:          input(v1alpha1.TargetSecret{Data: map[string]string{"t": "{{ .token }}"}}),
			wantKey:     "t",
			wantMessage: `map has no entry for key "token"`,
		},
		"parse error": {
			in:          input(v1alpha1.TargetSecret{Data: map[string]string{"profiles.yml": "token: {{ .Token "}}),
			wantKey:     "profiles.yml",
			wantMessage: "unclosed action",
		},
		"undefined function": {
			in:          input(v1alpha1.TargetSecret{Data: map[string]string{"t": "{{ .Token | b64enc }}"}}),
			wantKey:     "t",
			wantMessage: `function "b64enc" not defined`,
		},
		"first failing key in sorted order": {
			in: input(v1alpha1.TargetSecret{Data: map[string]string{
				"a-good": "{{ .Token }}",
				"c-bad":  "{{ .Nope }}",
				"b-bad":  "{{ .Token ",
			}}),
			wantKey:     "b-bad",
			wantMessage: `target.data["b-bad"]`,
		},
		"range refused": {
			in:      input(v1alpha1.TargetSecret{Data: map[string]string{"t": "{{ range 1000000000000 }}x{{ end }}"}}),
			wantKey: "t",
			wantIs:  errRange,
		},
		"range nested in if/else refused": {
			in:      input(v1alpha1.TargetSecret{Data: map[string]string{"t": "{{ if .Hostname }}{{ else }}{{ with .Host }}{{ range . }}{{ end }}{{ end }}{{ end }}"}}),
			wantKey: "t",
			wantIs:  errRange,
		},
		"define refused": {
			in: input(v1alpha1.TargetSecret{Data: map[string]string{
				"t": `{{ define "a" }}{{ template "a" }}{{ template "a" }}{{ end }}{{ template "a" }}`,
			}}),
			wantKey: "t",
			wantIs:  errTemplateCall,
		},
		"block refused": {
			in:      input(v1alpha1.TargetSecret{Data: map[string]string{"t": `{{ block "b" . }}{{ .Token }}{{ end }}`}}),
			wantKey: "t",
			wantIs:  errTemplateCall,
		},
		"template call refused": {
			in:      input(v1alpha1.TargetSecret{Data: map[string]string{"t": `{{ template "t" }}`}}),
			wantKey: "t",
			wantIs:  errTemplateCall,
		},
		"rendered data above the Secret limit": {
			in: input(v1alpha1.TargetSecret{Data: map[string]string{
				"a": `{{ printf "%0600000d" 0 }}`,
				"b": `{{ printf "%0600000d" 0 }}`,
			}}),
			wantKey: "b",
			wantIs:  errDataTooLarge,
		},
		"printf argument index bomb": {
			in: input(v1alpha1.TargetSecret{Data: map[string]string{
				"t": `{{ $a := printf "%01000000d" 0 }}{{ printf "%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s" $a }}`,
			}}),
			wantKey: "t",
			wantIs:  errFuncBudget,
		},
		"doubling variables bomb": {
			in: input(v1alpha1.TargetSecret{Data: map[string]string{
				"t": `{{ $a := printf "%01000000d" 0 }}{{ $a = print $a $a }}{{ $a = print $a $a }}{{ $a = print $a $a }}{{ $a = print $a $a }}`,
			}}),
			wantKey: "t",
			wantIs:  errFuncBudget,
		},
		"js expansion bomb": {
			in: input(v1alpha1.TargetSecret{Data: map[string]string{
				"t": `{{ $a := printf "%01000000d" 0 }}{{ $b := js $a $a }}`,
			}}),
			wantKey: "t",
			wantIs:  errFuncBudget,
		},
		"empty token": {
			in:          func() Input { in := input(v1alpha1.TargetSecret{}); in.Token = ""; return in }(),
			wantMessage: errEmptyToken,
		},
		"empty credential name": {
			in:          func() Input { in := input(v1alpha1.TargetSecret{}); in.CredentialName = ""; return in }(),
			wantMessage: errEmptyCredentialName,
		},
		"expiry not after issue": {
			in:          func() Input { in := input(v1alpha1.TargetSecret{}); in.ExpiresAt = in.IssuedAt; return in }(),
			wantMessage: errBadTimes,
		},
		"zero times": {
			in: func() Input {
				in := input(v1alpha1.TargetSecret{})
				in.IssuedAt, in.ExpiresAt = time.Time{}, time.Time{}
				return in
			}(),
			wantMessage: errBadTimes,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Render(tc.in)
			if err == nil {
				t.Fatalf("Render() = %v, want an error", got)
			}
			if got.Data != nil || got.Labels != nil || got.Annotations != nil {
				t.Errorf("Render() returned partial content with an error: %+v", got)
			}
			var te *TemplateError
			isTE := errors.As(err, &te)
			switch {
			case tc.wantKey == "" && isTE:
				t.Errorf("Render() error = %v, want a plain error, not *TemplateError", err)
			case tc.wantKey != "" && !isTE:
				t.Fatalf("Render() error = %v (%T), want *TemplateError", err, err)
			case isTE && te.Key != tc.wantKey:
				t.Errorf("TemplateError.Key = %q, want %q", te.Key, tc.wantKey)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("Render() error = %v, want errors.Is %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantMessage) {
				t.Errorf("Render() error = %q, want it to contain %q", err, tc.wantMessage)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("Render() error contains the token: %q", err)
			}
		})
	}
}

// TestTemplateErrorNeverContainsToken renders templates that fail in many ways, most of them
// refused for computing on the token (they would once have failed while holding the token or parts
// of it), and checks that neither the message nor the wrapped error carries the token or a
// recognisable part of it.
func TestTemplateErrorNeverContainsToken(t *testing.T) {
	tests := map[string]struct {
		template    string
		wantMessage string
	}{
		"index out of range":          {template: `{{ index .Token 5000 }}`, wantMessage: errTokenUse.Error()},
		"field of a string":           {template: `{{ .Token.Foo }}`, wantMessage: errTokenUse.Error()},
		"call a string":               {template: `{{ call .Token }}`, wantMessage: errTokenUse.Error()},
		"compare with a number":       {template: `{{ eq .Token 1 }}`, wantMessage: errTokenUse.Error()},
		"argument to a field":         {template: `{{ .Token 1 }}`, wantMessage: errTokenUse.Error()},
		"printf into a function":      {template: `{{ .Token | printf "%d" | index .Token }}`, wantMessage: errTokenUse.Error()},
		"slice past the end":          {template: `{{ slice .Token 10 5000 }}`, wantMessage: errTokenUse.Error()},
		"index out of range, host":    {template: `{{ index .Host 5000 }}`, wantMessage: "index out of range"},
		"field of a string, host":     {template: `{{ .Host.Foo }}`, wantMessage: "can't evaluate field Foo"},
		"field of a string, with":     {template: `{{ with .Host }}{{ .Token }}{{ end }}`, wantMessage: "can't evaluate field Token"},
		"range over the token":        {template: `{{ range .Token }}{{ . }}{{ end }}`, wantMessage: "range is not supported"},
		"token-prefix range":          {template: `{{ range slice .Token 0 20 }}{{ end }}`, wantMessage: "range is not supported"},
		"missing key after the token": {template: `{{ .Token }}{{ .Missing }}`, wantMessage: `no entry for key "Missing"`},
		"error context quoting the token literally": {
			template: `{{ "` + testToken + `" 1 }}`, wantMessage: redactedMarker,
		},
		"failure depending on the token's content": {
			template: `{{ if eq (slice .Token 0 3) "eyJ" }}{{ index .Token 5000 }}{{ end }}`, wantMessage: errTokenUse.Error(),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Render(input(v1alpha1.TargetSecret{Data: map[string]string{"k": tc.template}}))
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("Render() error = %v, want *TemplateError", err)
			}
			for _, msg := range []string{err.Error(), te.Err.Error()} {
				if strings.Contains(msg, testToken) || strings.Contains(msg, testToken[:12]) ||
					strings.Contains(msg, testToken[20:40]) {
					t.Errorf("error message leaks the token: %q", msg)
				}
			}
			if !strings.Contains(err.Error(), tc.wantMessage) {
				t.Errorf("Render() error = %q, want it to contain %q", err, tc.wantMessage)
			}
			if !strings.HasPrefix(err.Error(), `target.data["k"]: `) {
				t.Errorf("Render() error = %q, want it to name the key", err)
			}
		})
	}
}

// TestExplainExecError drives the redaction paths directly, since text/template rarely formats
// values into its errors once range is refused.
func TestExplainExecError(t *testing.T) {
	v := newValues(azureHost, testToken, expiresAt)
	leaky := errors.New("range can't iterate over " + testToken)
	tests := map[string]struct {
		template string
		err      error
		want     string
	}{
		"placeholder run fails alike": {
			template: `{{ .Missing }}`, err: leaky, want: `map has no entry for key "Missing"`,
		},
		"placeholder run succeeds": {
			template: `{{ .Token }}`, err: leaky, want: msgOnlyWithToken,
		},
		"limit errors are kept": {
			template: `{{ .Token }}`, err: errDataTooLarge, want: errDataTooLarge.Error(),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := explainExecError("k", tc.template, v, budget{}, tc.err)
			if !strings.Contains(got.Error(), tc.want) || strings.Contains(got.Error(), testToken) {
				t.Errorf("explainExecError() = %q, want it to contain %q and not the token", got, tc.want)
			}
		})
	}
}

func TestNewTemplateErrorRedacts(t *testing.T) {
	tests := map[string]struct {
		token, inner string
		want         string
	}{
		"no token in the message": {token: "s3cr3t-value", inner: "boom", want: `target.data["k"]: boom`},
		"token replaced":          {token: "s3cr3t-value", inner: "got s3cr3t-value twice: s3cr3t-value", want: `target.data["k"]: got [redacted] twice: [redacted]`},
		"replacement recreates the token": {
			// The marker ends in "d]", so "d]Q" reappears after replacing "d]Q" followed by "Q".
			token: "d]Q", inner: "d]QQ", want: `target.data["k"]: ` + withheldMessage,
		},
		"token within the scaffold": {token: "data[", inner: "boom", want: `target.[redacted]"k"]: boom`},
		"empty token":               {token: "", inner: "boom", want: `target.data["k"]: boom`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			te := newTemplateError("k", errors.New(tc.inner), tc.token)
			if te.Error() != tc.want {
				t.Errorf("Error() = %q, want %q", te.Error(), tc.want)
			}
			if tc.token != "" && (strings.Contains(te.Error(), tc.token) || strings.Contains(te.Err.Error(), tc.token)) {
				t.Errorf("TemplateError leaks the token: %q / %q", te.Error(), te.Err)
			}
		})
	}
	// A TemplateError built by hand still formats.
	if got := (&TemplateError{Key: "x", Err: errors.New("bad")}).Error(); got != `target.data["x"]: bad` {
		t.Errorf("Error() = %q", got)
	}
	// errors.Is reaches a sentinel when nothing had to be redacted.
	if te := newTemplateError("k", errRange, testToken); !errors.Is(te, errRange) {
		t.Errorf("errors.Is(%v, errRange) = false", te)
	}
}

func TestValidateTemplates(t *testing.T) {
	tests := map[string]struct {
		target  v1alpha1.TargetSecret
		wantKey string // "" means valid
	}{
		"no data":            {target: v1alpha1.TargetSecret{}},
		"good templates":     {target: v1alpha1.TargetSecret{Data: map[string]string{"a": "{{ .Token }}", "b": "{{ .Hostname }}:{{ .ExpiresAt }}"}}},
		"missing key":        {target: v1alpha1.TargetSecret{Data: map[string]string{"a": "{{ .Token }}", "b": "{{ .Expiry }}"}}, wantKey: "b"},
		"parse error":        {target: v1alpha1.TargetSecret{Data: map[string]string{"a": "{{ if }}"}}, wantKey: "a"},
		"range":              {target: v1alpha1.TargetSecret{Data: map[string]string{"a": "{{ range 3 }}{{ end }}"}}, wantKey: "a"},
		"too large":          {target: v1alpha1.TargetSecret{Data: map[string]string{"a": `{{ printf "%0900000d" 0 }}{{ printf "%0900000d" 0 }}`}}, wantKey: "a"},
		"indexing the token": {target: v1alpha1.TargetSecret{Data: map[string]string{"a": "{{ index .Token 40 }}"}}, wantKey: "a"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := ValidateTemplates(tc.target, azureHost)
			if tc.wantKey == "" {
				if err != nil {
					t.Errorf("ValidateTemplates() = %v, want nil", err)
				}
				return
			}
			var te *TemplateError
			if !errors.As(err, &te) || te.Key != tc.wantKey {
				t.Errorf("ValidateTemplates() = %v, want *TemplateError for key %q", err, tc.wantKey)
			}
		})
	}
}

func TestHostname(t *testing.T) {
	tests := map[string]struct{ host, want string }{
		"azure with trailing slash": {host: "https://adb-1.7.azuredatabricks.net/", want: "adb-1.7.azuredatabricks.net"},
		"aws":                       {host: "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com", want: "dbc-a1b2c3d4-e5f6.cloud.databricks.com"},
		"ip and port":               {host: "https://127.0.0.1:8443", want: "127.0.0.1:8443"},
		"ipv6 and port":             {host: "https://[::1]:8443/", want: "[::1]:8443"},
		"path, query and fragment":  {host: "https://h.example.com:443/a/b?o=1#x", want: "h.example.com:443"},
		"user info":                 {host: "https://user:pw@h.example.com/", want: "h.example.com"},
		"surrounding spaces":        {host: "  https://h.example.com/  ", want: "h.example.com"},
		"no scheme":                 {host: "h.example.com/", want: "h.example.com"},
		"no scheme with port":       {host: "h.example.com:8443", want: "h.example.com:8443"},
		"empty":                     {host: "", want: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Hostname(tc.host); got != tc.want {
				t.Errorf("Hostname(%q) = %q, want %q", tc.host, got, tc.want)
			}
		})
	}
}

func TestParseTimes(t *testing.T) {
	rendered, err := Render(input(v1alpha1.TargetSecret{}))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		annotations map[string]string
		wantIssued  time.Time
		wantExpires time.Time
		wantOK      bool
	}{
		"round trip from Render": {annotations: rendered.Annotations, wantIssued: issuedAt, wantExpires: expiresAt, wantOK: true},
		"other zone is returned as UTC": {
			annotations: map[string]string{
				v1alpha1.AnnotationIssuedAt:  "2026-11-28T19:00:00+01:00",
				v1alpha1.AnnotationExpiresAt: "2026-11-28T20:00:00+01:00",
			},
			wantIssued: issuedAt, wantExpires: expiresAt, wantOK: true,
		},
		"nil":             {annotations: nil},
		"missing issued":  {annotations: map[string]string{v1alpha1.AnnotationExpiresAt: "2026-11-28T19:00:00Z"}},
		"missing expires": {annotations: map[string]string{v1alpha1.AnnotationIssuedAt: "2026-11-28T18:00:00Z"}},
		"malformed": {annotations: map[string]string{
			v1alpha1.AnnotationIssuedAt:  "2026-11-28 18:00:00",
			v1alpha1.AnnotationExpiresAt: "2026-11-28T19:00:00Z",
		}},
		"expires before issued": {annotations: map[string]string{
			v1alpha1.AnnotationIssuedAt:  "2026-11-28T19:00:00Z",
			v1alpha1.AnnotationExpiresAt: "2026-11-28T18:00:00Z",
		}},
		"expires equal to issued": {annotations: map[string]string{
			v1alpha1.AnnotationIssuedAt:  "2026-11-28T19:00:00Z",
			v1alpha1.AnnotationExpiresAt: "2026-11-28T19:00:00Z",
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			gotIssued, gotExpires, ok := ParseTimes(tc.annotations)
			if ok != tc.wantOK || !gotIssued.Equal(tc.wantIssued) || !gotExpires.Equal(tc.wantExpires) {
				t.Errorf("ParseTimes() = (%v, %v, %v), want (%v, %v, %v)",
					gotIssued, gotExpires, ok, tc.wantIssued, tc.wantExpires, tc.wantOK)
			}
			if ok && (gotIssued.Location() != time.UTC || gotExpires.Location() != time.UTC) {
				t.Errorf("ParseTimes() returned non-UTC times %v %v", gotIssued, gotExpires)
			}
		})
	}
}

func TestDataHash(t *testing.T) {
	baseTarget := func() v1alpha1.TargetSecret {
		return v1alpha1.TargetSecret{
			Name:        "dbt-prod-token",
			Labels:      map[string]string{"team": "analytics"},
			Annotations: map[string]string{"reloader.stakater.com/match": "true"},
			Data:        map[string]string{"DATABRICKS_TOKEN": "{{ .Token }}", "HOST": "{{ .Hostname }}"},
		}
	}
	baseData := func() map[string][]byte {
		return map[string][]byte{"DATABRICKS_TOKEN": []byte(testToken), "HOST": []byte("adb-1.7.azuredatabricks.net")}
	}
	base := DataHash(azureHost, baseTarget(), baseData())
	if len(base) != 64 {
		t.Fatalf("DataHash() = %q, want 64 hex digits", base)
	}

	type mutation struct {
		host   string
		target func(*v1alpha1.TargetSecret)
		data   func(map[string][]byte)
	}
	changes := map[string]mutation{
		"host":                {host: "https://adb-2.7.azuredatabricks.net/"},
		"host trailing slash": {host: strings.TrimSuffix(azureHost, "/")},
		"target name":         {target: func(s *v1alpha1.TargetSecret) { s.Name = "other" }},
		"label value":         {target: func(s *v1alpha1.TargetSecret) { s.Labels["team"] = "finance" }},
		"label added":         {target: func(s *v1alpha1.TargetSecret) { s.Labels["tier"] = "1" }},
		"annotation removed":  {target: func(s *v1alpha1.TargetSecret) { s.Annotations = nil }},
		"template text":       {target: func(s *v1alpha1.TargetSecret) { s.Data["HOST"] = "{{ .Host }}" }},
		"template key":        {target: func(s *v1alpha1.TargetSecret) { s.Data["HOSTNAME"] = s.Data["HOST"]; delete(s.Data, "HOST") }},
		"label moved to annotations": {target: func(s *v1alpha1.TargetSecret) {
			s.Annotations["team"] = "analytics"
			delete(s.Labels, "team")
		}},
		"one data byte":    {data: func(d map[string][]byte) { d["DATABRICKS_TOKEN"][len(testToken)-1] ^= 1 }},
		"data key added":   {data: func(d map[string][]byte) { d["EXTRA"] = nil }},
		"data key removed": {data: func(d map[string][]byte) { delete(d, "HOST") }},
		"data renamed":     {data: func(d map[string][]byte) { d["HOST2"] = d["HOST"]; delete(d, "HOST") }},
		"bytes moved between key and value": {data: func(d map[string][]byte) {
			d["HOSTa"] = []byte("db-1.7.azuredatabricks.net")
			delete(d, "HOST")
		}},
	}
	for name, m := range changes {
		t.Run("changes with "+name, func(t *testing.T) {
			host, target, data := azureHost, baseTarget(), baseData()
			if m.host != "" {
				host = m.host
			}
			if m.target != nil {
				m.target(&target)
			}
			if m.data != nil {
				m.data(data)
			}
			if got := DataHash(host, target, data); got == base {
				t.Errorf("DataHash() unchanged after changing %s", name)
			}
		})
	}

	stable := map[string]func() string{
		"same input again": func() string { return DataHash(azureHost, baseTarget(), baseData()) },
		"maps rebuilt in another order": func() string {
			target := baseTarget()
			target.Data = map[string]string{"HOST": "{{ .Hostname }}", "DATABRICKS_TOKEN": "{{ .Token }}"}
			return DataHash(azureHost, target, map[string][]byte{
				"HOST": []byte("adb-1.7.azuredatabricks.net"), "DATABRICKS_TOKEN": []byte(testToken),
			})
		},
	}
	for name, f := range stable {
		t.Run("stable with "+name, func(t *testing.T) {
			if got := f(); got != base {
				t.Errorf("DataHash() = %s, want %s", got, base)
			}
		})
	}

	t.Run("nil and empty maps hash alike", func(t *testing.T) {
		a := DataHash(azureHost, v1alpha1.TargetSecret{}, nil)
		b := DataHash(azureHost, v1alpha1.TargetSecret{Labels: map[string]string{}, Annotations: map[string]string{}, Data: map[string]string{}}, map[string][]byte{})
		if a != b {
			t.Errorf("DataHash(nil maps) = %s, DataHash(empty maps) = %s", a, b)
		}
	})
	t.Run("length prefixes keep fields apart", func(t *testing.T) {
		a := DataHash("ab", v1alpha1.TargetSecret{Name: "c"}, nil)
		b := DataHash("a", v1alpha1.TargetSecret{Name: "bc"}, nil)
		if a == b {
			t.Errorf("DataHash() collides when bytes move between host and name")
		}
	})
}

// TestDataHashDetectsHandEdits plays the controller: render, "store" the Secret, recompute from
// the live data, and compare with the annotation.
func TestDataHashDetectsHandEdits(t *testing.T) {
	in := input(v1alpha1.TargetSecret{})
	got, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	live := maps.Clone(got.Data)
	if DataHash(in.Host, in.Target, live) != got.Annotations[v1alpha1.AnnotationDataHash] {
		t.Fatalf("recomputed hash of an untouched Secret differs from the annotation")
	}
	live[v1alpha1.DefaultTokenKey] = []byte("pasted-by-hand")
	if DataHash(in.Host, in.Target, live) == got.Annotations[v1alpha1.AnnotationDataHash] {
		t.Errorf("hand-edited token not detected")
	}
}
