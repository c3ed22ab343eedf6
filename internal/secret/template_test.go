package secret

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// Tokens for the oracle tests, named rather than printed: otherToken has testToken's length and
// differs from it in its first character (testToken starts with "e"), shortToken is much shorter.
var (
	otherToken = "f" + testToken[1:]
	shortToken = "Zq9-short"
)

// oracleTemplates are templates whose success or failure depended on the token's content before
// the token rule: each fails with a token starting with "e" (testToken) and succeeds with one
// starting with "f" (otherToken), the first question of a character-by-character search.
var oracleTemplates = map[string]string{
	"slice and compare": `{{ if eq (slice .Token 0 1) "e" }}{{ index .Token 999 }}{{ end }}`,
	"printf precision":  `{{ if printf "%.1s" .Token | eq "e" }}{{ index .Token 999 }}{{ end }}`,
	"index":             `{{ if eq (index .Token 0) 101 }}{{ index .Token 999 }}{{ end }}`,
	"ordering":          `{{ if lt .Token "f" }}{{ index .Host 999 }}{{ end }}`,
	"variable":          `{{ $t := slice .Token 0 1 }}{{ if eq $t "e" }}{{ .Missing }}{{ end }}`,
	"dollar":            `{{ if eq (slice $.Token 0 1) "e" }}{{ .Missing }}{{ end }}`,
	"data through dot":  `{{ if eq (slice (index . "Token") 0 1) "e" }}{{ .Missing }}{{ end }}`,
	"data through $":    `{{ with .Host }}{{ if eq (slice (index $ "Token") 0 1) "e" }}{{ .Missing }}{{ end }}{{ end }}`,
	"with on a slice":   `{{ with slice .Token 0 1 }}{{ if eq . "e" }}{{ $.Missing }}{{ end }}{{ end }}`,
}

// TestTemplateOutcomeDoesNotDependOnToken is finding 6 of issue 11, the template oracle: a spec
// author who cannot read the Secret renders the same template with the real token and learns from
// Ready whether it failed. It renders each oracle template with two tokens of the same length that
// differ in one character, and with a much shorter one, and wants the same refusal every time.
// Before the token rule, the first token failed and the second rendered.
func TestTemplateOutcomeDoesNotDependOnToken(t *testing.T) {
	for name, tmpl := range oracleTemplates {
		t.Run(name, func(t *testing.T) {
			var messages []string
			for _, tok := range []struct{ name, value string }{
				{"token starting with e", testToken}, {"token starting with f", otherToken}, {"short token", shortToken},
			} {
				in := input(v1alpha1.TargetSecret{Data: map[string]string{"k": tmpl}})
				in.Token = tok.value
				got, err := Render(in)
				if err == nil {
					t.Fatalf("%s: Render() succeeded with %d data keys; want the template refused whatever the token", tok.name, len(got.Data))
				}
				messages = append(messages, err.Error())
			}
			for i, msg := range messages {
				if msg != messages[0] {
					t.Errorf("refusal differs between tokens: %q vs %q", messages[0], msg)
				}
				if !strings.Contains(msg, "the token may only be written out as it is") &&
					!strings.Contains(msg, "uses the whole template data") {
					t.Errorf("render %d: error = %q, want the token rule's message", i, msg)
				}
			}
		})
	}
}

// TestTokenRuleRefusesAtValidation checks that every use of the token other than writing it out,
// and every use of the whole data, is refused by ValidateTemplates (before any token exists), with
// a message that names the key and the spot, and that Render refuses it with the very same
// message whatever the token.
func TestTokenRuleRefusesAtValidation(t *testing.T) {
	tests := map[string]struct {
		template string
		want     error  // errTokenUse or errDataUse
		at       string // location and context in the message
	}{
		"compare a slice":             {template: `{{ if eq (slice .Token 0 1) "e" }}{{ index .Token 99 }}{{ end }}`, want: errTokenUse, at: "k:1:16: at <.Token>"},
		"printf piped into eq":        {template: `{{ printf "%.1s" .Token | eq "e" }}`, want: errTokenUse, at: "k:1:17: at <.Token>"},
		"eq":                          {template: `{{ eq .Token "guess" }}`, want: errTokenUse},
		"ne":                          {template: `{{ ne .Token "" }}`, want: errTokenUse},
		"lt, a binary search":         {template: `{{ lt .Token "m" }}`, want: errTokenUse},
		"len":                         {template: `{{ len .Token }}`, want: errTokenUse},
		"index":                       {template: `{{ index .Token 0 }}`, want: errTokenUse},
		"slice":                       {template: `{{ slice .Token 0 1 }}`, want: errTokenUse},
		"and":                         {template: `{{ and .Host .Token }}`, want: errTokenUse},
		"or":                          {template: `{{ or .Token "x" }}`, want: errTokenUse},
		"not":                         {template: `{{ not .Token }}`, want: errTokenUse},
		"call":                        {template: `{{ call .Token }}`, want: errTokenUse},
		"argument to the field":       {template: `{{ .Token 1 }}`, want: errTokenUse},
		"field of the token":          {template: `{{ .Token.X }}`, want: errTokenUse},
		"piped into print":            {template: `{{ .Token | print }}`, want: errTokenUse},
		"printf %s":                   {template: `{{ printf "%s" .Token }}`, want: errTokenUse},
		"html":                        {template: `{{ html .Token }}`, want: errTokenUse},
		"js":                          {template: `{{ .Token | js }}`, want: errTokenUse},
		"urlquery":                    {template: `{{ urlquery .Token }}`, want: errTokenUse},
		"parenthesised":               {template: `{{ (.Token) }}`, want: errTokenUse},
		"if condition":                {template: `{{ if .Token }}x{{ end }}`, want: errTokenUse},
		"with condition":              {template: `{{ with .Token }}{{ . }}{{ end }}`, want: errTokenUse},
		"else if condition":           {template: `{{ if .Host }}{{ else if .Token }}x{{ end }}`, want: errTokenUse},
		"else with condition":         {template: `{{ with .Host }}{{ else with .Token }}x{{ end }}`, want: errTokenUse},
		"nested if":                   {template: `{{ if .Host }}{{ if eq .Token "x" }}{{ end }}{{ end }}`, want: errTokenUse},
		"in the else branch":          {template: `{{ if .Host }}{{ else }}{{ len .Token }}{{ end }}`, want: errTokenUse},
		"variable declaration":        {template: `{{ $t := .Token }}{{ $t }}`, want: errTokenUse},
		"variable assignment":         {template: `{{ $t := "" }}{{ $t = .Token }}`, want: errTokenUse},
		"with declaration":            {template: `{{ with $t := .Token }}{{ end }}`, want: errTokenUse},
		"$.Token piped":               {template: `{{ $.Token | print }}`, want: errTokenUse},
		"$.Token as argument":         {template: `{{ print $.Token }}`, want: errTokenUse},
		"$.Token field":               {template: `{{ $.Token.X }}`, want: errTokenUse},
		"$.Token in a with body":      {template: `{{ with .Host }}{{ len $.Token }}{{ end }}`, want: errTokenUse},
		"printed dot":                 {template: `{{ . }}`, want: errDataUse, at: "k:1:3: at <.>"},
		"dot to print":                {template: `{{ print . }}`, want: errDataUse},
		"index dot":                   {template: `{{ index . "Token" }}`, want: errDataUse},
		"dot in a variable":           {template: `{{ $d := . }}`, want: errDataUse},
		"with dot":                    {template: `{{ with . }}{{ .Host }}{{ end }}`, want: errDataUse},
		"chain on dot":                {template: `{{ (.).Token }}`, want: errDataUse},
		"dot in a condition":          {template: `{{ if and .Host (index . "Token") }}x{{ end }}`, want: errDataUse},
		"dot in the else of a with":   {template: `{{ with .Host }}{{ else }}{{ print . }}{{ end }}`, want: errDataUse},
		"printed $":                   {template: `{{ $ }}`, want: errDataUse},
		"index $ in a with body":      {template: `{{ with .Host }}{{ index $ "Token" }}{{ end }}`, want: errDataUse},
		"$ redeclared is still the $": {template: `{{ $ := .Host }}{{ $ }}`, want: errDataUse},
		"on a later line": {
			template: "host: {{ .Hostname }}\ntoken: {{ .Token | printf \"%q\" }}\n", want: errTokenUse, at: "k:2:10: at <.Token>",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			target := v1alpha1.TargetSecret{Data: map[string]string{"k": tc.template, "ok": "{{ .Token }}"}}
			err := ValidateTemplates(target, azureHost)
			var te *TemplateError
			if !errors.As(err, &te) || te.Key != "k" {
				t.Fatalf("ValidateTemplates() = %v, want *TemplateError for key k", err)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("ValidateTemplates() = %q, want errors.Is %q", err, tc.want)
			}
			want := fmt.Sprintf(`target.data["k"]: template: %s: %v`, tc.at, tc.want)
			if tc.at == "" {
				want = tc.want.Error()
			}
			if !strings.HasPrefix(err.Error(), `target.data["k"]: template: k:`) || !strings.Contains(err.Error(), want) {
				t.Errorf("ValidateTemplates() = %q, want it to contain %q", err, want)
			}
			for _, tok := range []string{testToken, otherToken, shortToken} {
				in := input(target)
				in.Token = tok
				if _, rerr := Render(in); rerr == nil || rerr.Error() != err.Error() {
					t.Errorf("Render() = %v, want the same refusal as ValidateTemplates: %q", rerr, err)
				}
			}
		})
	}
}

// TestTokenRuleAllows checks that writing the token out, in any number of places and keys, and
// computing on .Host, .Hostname and .ExpiresAt stay accepted and render as before.
func TestTokenRuleAllows(t *testing.T) {
	const hostname = "adb-1234567890123456.7.azuredatabricks.net"
	tests := map[string]struct{ template, want string }{
		"profiles.yml": {
			template: "analytics:\n  outputs:\n    prod:\n      type: databricks\n      host: {{ .Hostname }}\n      token: {{ .Token }}\n",
			want:     "analytics:\n  outputs:\n    prod:\n      type: databricks\n      host: " + hostname + "\n      token: " + testToken + "\n",
		},
		"bare":                      {template: "{{ .Token }}", want: testToken},
		"$.Token":                   {template: "{{ $.Token }}", want: testToken},
		"trim markers":              {template: "Bearer   {{- \" \" -}}  {{- .Token -}}  \n", want: "Bearer " + testToken},
		"twice":                     {template: "{{ .Token }}:{{ $.Token }}", want: testToken + ":" + testToken},
		"inside if on the host":     {template: `{{ if eq .Hostname "` + hostname + `" }}token: {{ .Token }}{{ else }}none{{ end }}`, want: "token: " + testToken},
		"inside with on the host":   {template: `{{ with .Host }}{{ . }} {{ $.Token }}{{ end }}`, want: "https://" + hostname + " " + testToken},
		"in the else of a with":     {template: `{{ with "" }}{{ . }}{{ else }}{{ .Token }}{{ end }}`, want: testToken},
		"else with on the expiry":   {template: `{{ with "" }}{{ else with .ExpiresAt }}{{ . }} {{ $.Token }}{{ end }}`, want: "2026-11-28T19:00:00Z " + testToken},
		"with declaration":          {template: `{{ with $h := .Hostname }}{{ $h }}{{ end }}`, want: hostname},
		"variables on the host":     {template: `{{ $h := .Host }}{{ $h = print $h "/api" }}{{ $h }}`, want: "https://" + hostname + "/api"},
		"printf on the host":        {template: `{{ printf "%q" .Host }}`, want: `"https://` + hostname + `"`},
		"functions on the expiry":   {template: `{{ slice .ExpiresAt 0 10 }} {{ .ExpiresAt | printf "at %s" }} {{ len .ExpiresAt }}`, want: "2026-11-28 at 2026-11-28T19:00:00Z 20"},
		"urlquery on $.Host":        {template: `{{ $.Host | urlquery }}`, want: "https%3A%2F%2F" + hostname},
		"js and html on fields":     {template: `{{ js .Hostname }}{{ html .ExpiresAt }}`, want: hostname + "2026-11-28T19:00:00Z"},
		"comparisons on the fields": {template: `{{ if and (ne .Host "") (lt .ExpiresAt "2027") }}ok{{ end }}`, want: "ok"},
		"a literal naming .Token":   {template: `{{ "{{ .Token }}" }}`, want: "{{ .Token }}"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			target := v1alpha1.TargetSecret{Data: map[string]string{"k": tc.template, v1alpha1.DefaultTokenKey: "{{ .Token }}"}}
			if err := ValidateTemplates(target, azureHost); err != nil {
				t.Fatalf("ValidateTemplates() = %v, want nil", err)
			}
			got, err := Render(input(target))
			if err != nil {
				t.Fatalf("Render() = %v", err)
			}
			if string(got.Data["k"]) != tc.want {
				t.Errorf("Render() data[k] differs from the expected rendering (%d bytes, want %d)", len(got.Data["k"]), len(tc.want))
			}
			if string(got.Data[v1alpha1.DefaultTokenKey]) != testToken {
				t.Errorf("Render() data[%s] is not the token", v1alpha1.DefaultTokenKey)
			}
		})
	}
}

// TestDataLimitDependsOnTokenLengthOnly pins down the one outcome the token still decides (see
// MaxDataBytes): a template padded to fill the limit with the token renders with every token of
// that length, whatever its characters, and fails alike with every longer one.
func TestDataLimitDependsOnTokenLengthOnly(t *testing.T) {
	pad := MaxDataBytes - len(testToken) // in two printfs: fmt ignores widths above maxFmtWidth
	tmpl := fmt.Sprintf(`{{ printf "%%0%dd" 0 }}{{ printf "%%0%dd" 0 }}{{ .Token }}`, pad/2, pad-pad/2)
	render := func(tok string) error {
		in := input(v1alpha1.TargetSecret{Data: map[string]string{"k": tmpl}})
		in.Token = tok
		_, err := Render(in)
		return err
	}
	for name, tok := range map[string]string{"token starting with e": testToken, "token starting with f": otherToken} {
		if err := render(tok); err != nil {
			t.Errorf("%s of the padded length: Render() = %v, want success", name, err)
		}
	}
	longer, otherLonger := render(testToken+"x"), render(otherToken+"y")
	if !errors.Is(longer, errDataTooLarge) || otherLonger == nil || longer.Error() != otherLonger.Error() {
		t.Errorf("tokens one byte longer: Render() = %v and %v, want the same errDataTooLarge", longer, otherLonger)
	}
}
