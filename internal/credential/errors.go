package credential

import "strings"

// ConditionError is a problem with what a credential refers to or selects — a missing Secret,
// ConfigMap or ServiceAccount, a missing key, a selector that does not parse, no namespace to
// serve. It is not a token error: no exchange was attempted. The pass reports it as Ready=False
// with Reason and waits for a watch (the object appears, the key is added) to bring the
// credential back.
type ConditionError struct {
	Reason  string
	Message string
	Hint    string
}

func (e *ConditionError) Error() string {
	if e.Hint == "" {
		return e.Message
	}
	var b strings.Builder
	b.WriteString(e.Message)
	b.WriteString(" (hint: ")
	b.WriteString(e.Hint)
	b.WriteString(")")
	return b.String()
}
