// Package secret renders the contents of the target Secret: its data (the default
// DATABRICKS_HOST/DATABRICKS_TOKEN keys or the spec's target.data templates), labels and
// annotations, including the data hash the controller uses to notice hand edits and target
// changes. It is pure, like the ESO and VSO renderers it follows: no client, no clock (times are in
// the Input) and no I/O. Owner references and the Secret type (always Opaque) are set by the
// controller.
package secret

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// Error texts for inputs the controller should never pass; they indicate a bug, not a spec error,
// so they are plain errors rather than *TemplateError.
const (
	errEmptyToken          = "secret: empty token"
	errEmptyCredentialName = "secret: empty credential name"
	errBadTimes            = "secret: expiresAt must be after issuedAt"
)

// Input is everything the Secret is rendered from.
type Input struct {
	// Host is spec.host as written; it may end with a slash.
	Host string
	// Token is the access token. It only ever appears in the rendered data, never in an error.
	Token string
	// IssuedAt and ExpiresAt bound the token's validity; both are written as annotations so that,
	// after a restart, the controller can tell whether the token is still fresh (see ParseTimes).
	IssuedAt  time.Time
	ExpiresAt time.Time
	// InputsHash is copied into the v1alpha1.AnnotationInputsHash annotation; it is computed by
	// the controller from the identity block and client-secret bytes.
	InputsHash string
	// CredentialName is the DatabricksCredential's name, the value of v1alpha1.LabelCredential.
	CredentialName string
	// Target is spec.target.
	Target v1alpha1.TargetSecret
}

// Desired is the rendered content of the target Secret. All maps are non-nil.
type Desired struct {
	// Data is exactly the Secret's data: the default keys, or the rendered target.data keys.
	Data map[string][]byte
	// Labels are target.labels plus v1alpha1.LabelCredential (ours win on a clash).
	Labels map[string]string
	// Annotations are target.annotations plus v1alpha1.AnnotationExpiresAt,
	// v1alpha1.AnnotationIssuedAt, v1alpha1.AnnotationInputsHash and v1alpha1.AnnotationDataHash
	// (ours win on a clash).
	Annotations map[string]string
}

// Render returns the desired content of the target Secret for in.
//
// With an empty in.Target.Data the data holds v1alpha1.DefaultHostKey (the host without trailing
// slashes) and v1alpha1.DefaultTokenKey, so `envFrom` works as-is for the Databricks CLI and SDKs,
// and v1alpha1.DefaultExpiresAtKey, from which the token-server sidecar reads the true expiry of
// tokens that are not JWTs.
// Otherwise each target.data entry is a text/template and the data holds exactly the rendered keys
// (see the template rules on TemplateError and ValidateTemplates). A template that fails returns a
// *TemplateError for the first failing key in sorted order, and no partial result, so the
// controller never writes a half-rendered Secret.
func Render(in Input) (Desired, error) {
	switch {
	case in.Token == "":
		return Desired{}, errors.New(errEmptyToken)
	case in.CredentialName == "":
		return Desired{}, errors.New(errEmptyCredentialName)
	case !in.ExpiresAt.After(in.IssuedAt):
		return Desired{}, errors.New(errBadTimes)
	}

	data, err := renderData(in.Target, in.Host, in.Token, in.ExpiresAt)
	if err != nil {
		return Desired{}, err
	}

	annotations := make(map[string]string, len(in.Target.Annotations)+4)
	maps.Copy(annotations, in.Target.Annotations)
	annotations[v1alpha1.AnnotationIssuedAt] = FormatTime(in.IssuedAt)
	annotations[v1alpha1.AnnotationExpiresAt] = FormatTime(in.ExpiresAt)
	annotations[v1alpha1.AnnotationInputsHash] = in.InputsHash
	annotations[v1alpha1.AnnotationDataHash] = DataHash(in.Host, in.Target, data)

	return Desired{Data: data, Labels: Labels(in.CredentialName, in.Target), Annotations: annotations}, nil
}

// Labels returns the target Secret's labels: target.labels plus v1alpha1.LabelCredential, which
// the manager's cache selects on (ours win on a clash; the schema reserves the prefix anyway).
func Labels(credentialName string, target v1alpha1.TargetSecret) map[string]string {
	labels := make(map[string]string, len(target.Labels)+1)
	maps.Copy(labels, target.Labels)
	labels[v1alpha1.LabelCredential] = credentialName
	return labels
}

// KeptAnnotations returns the annotations of a Secret whose token and data stay as they are:
// target.annotations plus the operator's own annotations (times and hashes) carried over from
// current, the Secret's live annotations.
func KeptAnnotations(target v1alpha1.TargetSecret, current map[string]string) map[string]string {
	annotations := make(map[string]string, len(target.Annotations)+4)
	maps.Copy(annotations, target.Annotations)
	for _, k := range []string{v1alpha1.AnnotationIssuedAt, v1alpha1.AnnotationExpiresAt, v1alpha1.AnnotationInputsHash, v1alpha1.AnnotationDataHash} {
		if v, ok := current[k]; ok {
			annotations[k] = v
		}
	}
	return annotations
}

// renderData returns the Secret's data: the default keys when target.data is empty, the rendered
// templates otherwise.
func renderData(target v1alpha1.TargetSecret, host, token string, expiresAt time.Time) (map[string][]byte, error) {
	if len(target.Data) == 0 {
		return map[string][]byte{
			v1alpha1.DefaultHostKey:      []byte(TrimHost(host)),
			v1alpha1.DefaultTokenKey:     []byte(token),
			v1alpha1.DefaultExpiresAtKey: []byte(FormatTime(expiresAt)),
		}, nil
	}
	return renderTemplates(target.Data, newValues(host, token, expiresAt))
}

// TrimHost returns host without trailing slashes: the value of DATABRICKS_HOST and of .Host in
// templates. The Databricks SDKs and dbt join paths onto it, and "https://x.net//api" is refused
// by some proxies.
func TrimHost(host string) string {
	return strings.TrimRight(host, "/")
}

// Hostname returns host[:port] of a workspace URL, without scheme, user info, path or trailing
// slash: https://adb-1.7.azuredatabricks.net/ gives adb-1.7.azuredatabricks.net and
// https://127.0.0.1:8443 gives 127.0.0.1:8443. It is .Hostname in templates, the form dbt's
// profiles.yml wants for `host`. A value that is not an absolute URL is cut by hand (scheme, user
// info, path, query and fragment removed), so a bare "host:port" survives as written.
func Hostname(host string) string {
	host = strings.TrimSpace(host)
	if u, err := url.Parse(host); err == nil && u.Host != "" {
		return u.Host
	}
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+len("://"):]
	}
	if i := strings.IndexAny(host, "/?#"); i >= 0 {
		host = host[:i]
	}
	if i := strings.LastIndex(host, "@"); i >= 0 {
		host = host[i+1:]
	}
	return host
}

// FormatTime formats t as the annotations and .ExpiresAt do: RFC 3339 in UTC, truncated to whole
// seconds. Truncation moves an expiry earlier, never later, so a consumer reading the annotation
// never believes a token lives longer than it does.
func FormatTime(t time.Time) string {
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}

// ParseTimes reads the issue and expiry times from a Secret's annotations, for the controller to
// decide after a restart whether the token in the Secret is still fresh. ok is false when either
// annotation is missing or malformed, or when expiresAt is not after issuedAt; the controller then
// treats the token as unusable. Times are returned in UTC.
func ParseTimes(annotations map[string]string) (issuedAt, expiresAt time.Time, ok bool) {
	issuedAt, err := time.Parse(time.RFC3339, annotations[v1alpha1.AnnotationIssuedAt])
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	expiresAt, err = time.Parse(time.RFC3339, annotations[v1alpha1.AnnotationExpiresAt])
	if err != nil || !expiresAt.After(issuedAt) {
		return time.Time{}, time.Time{}, false
	}
	return issuedAt.UTC(), expiresAt.UTC(), true
}

// dataHashVersion starts every hashed encoding, so that a future change of the encoding changes
// every hash (a one-time re-render) instead of colliding with an old one.
const dataHashVersion = "dbtoken.io/data-hash/v1"

// DataHash returns the hex SHA-256 that Render stores in v1alpha1.AnnotationDataHash. It covers
// host as written, the whole target spec (name, labels, annotations and data templates) and the
// Secret's data, each string length-prefixed and each map in sorted key order, so the encoding is
// unambiguous and deterministic across restarts. A nil map and an empty map hash alike, as the API
// server does not distinguish them.
//
// The controller recomputes it from the spec and the live Secret's data and compares it with the
// annotation: a mismatch means someone edited the data by hand, or host or target changed, and the
// Secret is re-rendered (without a new token exchange when the inputs hash still matches).
//
// The labels and annotations actually on the live Secret are deliberately not hashed: other tools
// (reloader, backup operators, kubectl annotate) add their own, and those must not cause a re-render
// loop. Changes to target.labels or target.annotations are still caught, because the target spec is
// hashed. The hash covers the token, but SHA-256 of a high-entropy token reveals nothing usable,
// the same trade-off ESO makes with its data hash annotation.
func DataHash(host string, target v1alpha1.TargetSecret, data map[string][]byte) string {
	e := encoder{h: sha256.New()}
	e.str(dataHashVersion)
	e.str(host)
	e.str(target.Name)
	e.strMap(target.Labels)
	e.strMap(target.Annotations)
	e.strMap(target.Data)
	e.count(len(data))
	for _, k := range slices.Sorted(maps.Keys(data)) {
		e.str(k)
		e.bytes(data[k])
	}
	return hex.EncodeToString(e.h.Sum(nil))
}

// encoder writes length-prefixed values into a hash, so that ("ab","c") and ("a","bc") differ.
type encoder struct{ h hash.Hash }

func (e encoder) count(n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	_, _ = e.h.Write(b[:]) // hash.Hash never returns an error.
}

func (e encoder) bytes(b []byte) {
	e.count(len(b))
	_, _ = e.h.Write(b)
}

func (e encoder) str(s string) {
	e.count(len(s))
	_, _ = e.h.Write([]byte(s))
}

func (e encoder) strMap(m map[string]string) {
	e.count(len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		e.str(k)
		e.str(m[k])
	}
}
