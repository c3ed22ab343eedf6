package secret

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// Limits on rendering. A DatabricksCredential is written by namespace users, and one manager serves
// every namespace, so no template may stall or exhaust the operator.
const (
	// MaxDataBytes bounds the rendered data of one Secret: the API server refuses Secrets above
	// 1 MiB (corev1.MaxSecretSize), so rendering stops there with a clear error instead of failing
	// later on the write.
	//
	// This is the one outcome of rendering that depends on the token, and only on its length: the
	// token rule (see checker) leaves the token nothing to do but be written out, so the rendered
	// size is a size fixed by the template plus the token's length times a count fixed by the
	// template. A spec author who pads a template to just under the limit can therefore learn the
	// token's length from Ready, one bit per edit. That is accepted and documented: the length
	// says nothing about the token's characters, and it is nearly the same for every token an
	// identity is issued (a JWT's length follows from its claims and signing key, which are no
	// secret). Hiding it would mean charging each {{ .Token }} an assumed maximum length instead:
	// that refuses templates whose real data fits, and a token longer than the assumption would
	// make the outcome depend on the length again.
	MaxDataBytes = 1 << 20
	// maxFuncBytes bounds what the string-building template functions (print, printf, println,
	// html, js, urlquery) may allocate in one render, including values kept in variables and never
	// written out.
	maxFuncBytes = 8 << 20
	// maxFmtWidth is fmt's own limit on a width or precision; larger ones are ignored by fmt.
	maxFmtWidth = 1_000_000
	// maxFmtExpansion is how much longer than its argument one fmt verb's output can be, without
	// the width: %+q turns a 4-byte rune into the 10 bytes of \U0010ffff.
	maxFmtExpansion = 10
	// otherArgSize is a generous bound on the printed size of a non-string template value (numbers,
	// bools, nil): %f of 1e308 prints about 320 bytes.
	otherArgSize = 1024
)

// Messages of a *TemplateError whose details cannot be shown safely.
const (
	redactedMarker   = "[redacted]"
	withheldMessage  = "invalid template (details withheld)"
	msgOnlyWithToken = "fails to render with the issued token (details withheld because they could contain the token)"
	msgPanic         = "template execution panicked"
)

// validationToken and validationExpiry stand in for the token and its expiry in
// ValidateTemplates. Templates cannot compute on the token (see checker), so its content does not
// matter; it is about as long as a short Databricks token, so the size check during validation is
// close to the one with the real token.
const validationToken = "dbtoken-placeholder-token-for-template-validation-0000000000000000"

var validationExpiry = time.Date(2000, time.January, 1, 1, 0, 0, 0, time.UTC)

var (
	errRange        = errors.New("range is not supported: the template data holds only strings, and a loop could stall the operator")
	errTemplateCall = errors.New("define, block and template are not supported: a template calling templates could stall the operator")
	errDataTooLarge = fmt.Errorf("rendered data exceeds %d bytes, the Secret size limit", MaxDataBytes)
	errFuncBudget   = fmt.Errorf("template functions would produce more than %d bytes", maxFuncBytes)
	// errTokenUse and errDataUse refuse templates that could compute on the token (see checker).
	errTokenUse = errors.New("uses .Token other than as {{ .Token }}: the token may only be written out as it is, " +
		"in an action of its own; it cannot be tested, compared, measured, indexed, sliced, passed to a function or kept in a variable")
	errDataUse = errors.New("uses the whole template data, which holds the token: name a field instead " +
		"(.Host, .Hostname, .ExpiresAt, or .Token written out as {{ .Token }})")
)

// TemplateError reports a target.data template that fails to parse or render; the controller
// turns it into Ready=False with reason InvalidTemplate and leaves an existing Secret untouched.
//
// Templates are Go text/template with the fields .Token, .Host (host without trailing slashes),
// .Hostname (host[:port], see Hostname) and .ExpiresAt (RFC 3339 UTC, see FormatTime), executed with
// missingkey=error so a misspelt field fails instead of rendering "<no value>". Because they are
// user input evaluated inside a shared operator, four things are refused: range loops; define,
// block and template (a template calling templates can recurse exponentially); more than
// MaxDataBytes of rendered data or maxFuncBytes built by print, printf, println, html, js and
// urlquery; and any use of the token other than writing it out as {{ .Token }}, and of the whole
// data (. or $) that holds it (see checker: otherwise whether rendering fails would reveal the
// token bit by bit). Without loops and calls a template runs in time linear in its length. Loops,
// calls and token uses are refused on the template text when it is parsed, before any token
// exists; only the size limits are met while rendering.
//
// The message never contains the token. Parse and token-rule errors cannot (the template was
// written before the token existed), and an execution error is re-created by executing the same
// template with a placeholder token of the same length: its message is reported if it fails
// alike, and a generic message otherwise. Under the token rule no execution error depends on the
// token's content, so the generic message is a guard that should never show. As a last guard
// every occurrence of the token is replaced. Err holds the sanitised error.
type TemplateError struct {
	// Key is the target.data key whose template failed.
	Key string
	// Err is what went wrong, already free of the token.
	Err error

	msg string // the full message, token-free; empty when built outside this package
}

func (e *TemplateError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return templateErrorMessage(e.Key, e.Err)
}

func (e *TemplateError) Unwrap() error { return e.Err }

func templateErrorMessage(key string, err error) string {
	return fmt.Sprintf("target.data[%q]: %v", key, err)
}

// newTemplateError builds a *TemplateError whose Err and message do not contain token.
func newTemplateError(key string, err error, token string) *TemplateError {
	err = redactError(err, token)
	return &TemplateError{Key: key, Err: err, msg: redact(templateErrorMessage(key, err), token)}
}

// ValidateTemplates renders target.data with a placeholder token and a fixed expiry, so the
// controller can refuse a broken template (Ready=False, InvalidTemplate) before it requests a token
// it could not write. It returns nil or a *TemplateError. The token rule makes every outcome of
// rendering independent of the token except the MaxDataBytes limit, so a template that passes
// fails with the real token only when the token's length pushes the data over that limit; Render
// reports that case.
func ValidateTemplates(target v1alpha1.TargetSecret, host string) error {
	if len(target.Data) == 0 {
		return nil
	}
	if _, err := renderTemplates(target.Data, newValues(host, validationToken, validationExpiry)); err != nil {
		return err
	}
	return nil
}

// values are the template fields.
type values struct {
	token, host, hostname, expiresAt string
}

func newValues(host, token string, expiresAt time.Time) values {
	return values{token: token, host: TrimHost(host), hostname: Hostname(host), expiresAt: FormatTime(expiresAt)}
}

// data is the template's dot. It is a map rather than a struct so that missingkey=error applies and
// a misspelt field reads "map has no entry for key".
func (v values) data() map[string]string {
	return map[string]string{"Token": v.token, "Host": v.host, "Hostname": v.hostname, "ExpiresAt": v.expiresAt}
}

// renderTemplates renders every template in sorted key order, so the reported error is
// deterministic, and returns nothing unless all succeed.
func renderTemplates(templates map[string]string, v values) (map[string][]byte, error) {
	out := make(map[string][]byte, len(templates))
	b := &budget{}
	for _, key := range slices.Sorted(maps.Keys(templates)) {
		before := *b
		rendered, executed, err := run(key, templates[key], v.data(), b)
		if err != nil {
			if executed {
				err = explainExecError(key, templates[key], v, before, err)
			}
			return nil, newTemplateError(key, err, v.token)
		}
		out[key] = rendered
	}
	return out, nil
}

// explainExecError returns an error describing the execution failure err without any risk of
// containing the token: text/template formats some values into its messages (for example "range
// can't iterate over <value>"). The template is executed again with a placeholder token of the
// same length and the same budget left; its error is returned when it fails too, a generic one
// otherwise. Limit errors are ours and safe as they are. Since the token rule keeps the token out
// of every computation, the placeholder run always fails alike; the re-run stays as a second line
// of defence, should a future field or function let a template compute on the token again.
func explainExecError(key, text string, v values, before budget, err error) error {
	if errors.Is(err, errDataTooLarge) || errors.Is(err, errFuncBudget) {
		return err
	}
	placeholder := v
	placeholder.token = strings.Repeat("x", len(v.token))
	if _, _, perr := run(key, text, placeholder.data(), &before); perr != nil {
		return perr
	}
	return errors.New(msgOnlyWithToken)
}

// run parses and executes one template. executed reports whether parsing succeeded, i.e. whether
// err comes from execution.
func run(key, text string, data map[string]string, b *budget) (out []byte, executed bool, err error) {
	t, err := parseTemplate(key, text, b)
	if err != nil {
		return nil, false, err
	}
	defer func() {
		// text/template re-panics runtime errors; one bad template must not crash the manager.
		// The panic value is dropped: it could hold template data.
		if r := recover(); r != nil {
			out, executed, err = nil, true, errors.New(msgPanic)
		}
	}()
	var buf bytes.Buffer
	if err := t.Execute(&limitWriter{buf: &buf, b: b}, data); err != nil {
		return nil, true, err
	}
	return buf.Bytes(), true, nil
}

// parseTemplate parses text and refuses the constructs that could make execution unbounded, and
// every use of the token other than writing it out (see checker).
func parseTemplate(key, text string, b *budget) (*template.Template, error) {
	t, err := template.New(key).Option("missingkey=error").Funcs(b.funcs()).Parse(text)
	if err != nil {
		return nil, err
	}
	if len(t.Templates()) > 1 {
		return nil, errTemplateCall
	}
	if t.Tree == nil {
		return t, nil
	}
	return t, checker{tree: t.Tree}.list(t.Tree.Root, true)
}

// checker walks a parsed template and refuses range, template calls, and anything that could make
// the outcome of rendering depend on the token.
//
// The token rule: the token may only be written out as it is, by an action whose whole pipeline is
// the field .Token (or $.Token) — {{ .Token }}, {{- .Token -}}. Anywhere else .Token or $.Token is
// refused: as a function or method argument, in a pipe, as the condition of if, else if or with,
// in a variable declaration or assignment, or with further fields (.Token.X). So is the whole
// template data wherever it holds the token: $, and . outside the body of a with (.Token could be
// read from it with index, printed with {{ . }} or print ., or kept in a variable).
//
// Why: whoever may edit a credential sees its Ready condition, though perhaps not its Secret. If a
// template could compute on the token, whether rendering fails would depend on the token's
// content, and Ready=False/InvalidTemplate versus True would answer one yes/no question per spec
// edit, e.g. {{ if eq (slice .Token 0 1) "e" }}{{ index .Token 999 }}{{ end }}: a 36-character
// token in about 240 edits, without a new exchange. With the rule, the token reaches no function, branch
// or variable, so every decision the template makes, every value it computes and every error it
// raises is the same for every token, and the refusal itself is decided on the template text,
// before any token exists. One thing still depends on the token: its length, through
// MaxDataBytes (see there).
//
// .Host, .Hostname and .ExpiresAt stay fully usable. Inside the body of a with, dot is the value
// of the with's pipeline, which the rule guarantees is not the data, so {{ with .Host }}{{ . }}
// is allowed; variables hold values of checked pipelines only, so $x is never the data either.
// The rule is conservative where it costs nothing: a .Token inside a with body (a field of a
// string, which fails on every token alike) is treated as the token, and $ as the data even when
// redeclared.
type checker struct {
	tree *parse.Tree
}

// list checks a list of nodes; dotIsData reports whether dot is the template data there.
func (c checker) list(n *parse.ListNode, dotIsData bool) error {
	if n == nil {
		return nil
	}
	for _, node := range n.Nodes {
		if err := c.node(node, dotIsData); err != nil {
			return err
		}
	}
	return nil
}

// node checks one node of a list. Pipelines cannot contain control structures, so lists and the
// branches of if and with are all there is to walk besides pipelines; text and comments hold no
// code, and break and continue exist only inside range.
func (c checker) node(n parse.Node, dotIsData bool) error {
	switch n := n.(type) {
	case *parse.ListNode:
		return c.list(n, dotIsData)
	case *parse.ActionNode:
		if writesToken(n.Pipe) {
			return nil
		}
		return c.pipe(n.Pipe, dotIsData)
	case *parse.IfNode:
		return c.branch(&n.BranchNode, dotIsData, dotIsData)
	case *parse.WithNode:
		// In the body, dot is the value of the with's pipeline, which pipe has just checked does
		// not touch the data; the else branch (and else with) runs with the outer dot.
		return c.branch(&n.BranchNode, dotIsData, false)
	case *parse.RangeNode:
		return errRange
	case *parse.TemplateNode:
		return errTemplateCall
	}
	return nil
}

func (c checker) branch(n *parse.BranchNode, dotIsData, bodyDotIsData bool) error {
	if err := c.pipe(n.Pipe, dotIsData); err != nil {
		return err
	}
	if err := c.list(n.List, bodyDotIsData); err != nil {
		return err
	}
	return c.list(n.ElseList, dotIsData)
}

// pipe checks a pipeline that is not a bare {{ .Token }}: none of its arguments may be the token or
// the data. Declared and assigned variables are names, not values, and need no check.
func (c checker) pipe(p *parse.PipeNode, dotIsData bool) error {
	if p == nil {
		return nil
	}
	for _, cmd := range p.Cmds {
		for _, arg := range cmd.Args {
			if err := c.arg(arg, dotIsData); err != nil {
				return err
			}
		}
	}
	return nil
}

// arg checks one operand of a command.
func (c checker) arg(n parse.Node, dotIsData bool) error {
	switch n := n.(type) {
	case *parse.FieldNode:
		if n.Ident[0] == "Token" {
			return c.refuse(n, errTokenUse)
		}
	case *parse.VariableNode:
		if n.Ident[0] == "$" {
			if len(n.Ident) == 1 {
				return c.refuse(n, errDataUse)
			}
			if n.Ident[1] == "Token" {
				return c.refuse(n, errTokenUse)
			}
		}
	case *parse.DotNode:
		if dotIsData {
			return c.refuse(n, errDataUse)
		}
	case *parse.ChainNode:
		// (pipeline).Field or function.Field: the fields apply to a value the operand check
		// guarantees is not the data.
		return c.arg(n.Node, dotIsData)
	case *parse.PipeNode:
		return c.pipe(n, dotIsData)
	}
	return nil
}

// refuse reports a refused use of the token or the data at n, located like text/template's own
// errors. The location and context come from the template text, never from the token.
func (c checker) refuse(n parse.Node, err error) error {
	location, context := c.tree.ErrorContext(n)
	return fmt.Errorf("template: %s: at <%s>: %w", location, context, err)
}

// writesToken reports whether p is exactly .Token or $.Token: one command of one argument, no
// variables, no further fields.
func writesToken(p *parse.PipeNode) bool {
	if p == nil || p.IsAssign || len(p.Decl) != 0 || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return false
	}
	switch n := p.Cmds[0].Args[0].(type) {
	case *parse.FieldNode:
		return len(n.Ident) == 1 && n.Ident[0] == "Token"
	case *parse.VariableNode:
		return len(n.Ident) == 2 && n.Ident[0] == "$" && n.Ident[1] == "Token"
	}
	return false
}

// budget counts what one render has written and what its template functions have built.
type budget struct {
	out   int // bytes of rendered data, against MaxDataBytes
	built int // bytes returned by string-building functions, against maxFuncBytes
}

// limitWriter stops execution once the rendered data would exceed MaxDataBytes; text/template
// aborts on a write error and returns it.
type limitWriter struct {
	buf *bytes.Buffer
	b   *budget
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if len(p) > MaxDataBytes-w.b.out {
		return 0, errDataTooLarge
	}
	w.b.out += len(p)
	return w.buf.Write(p)
}

// funcs replaces text/template's string-building builtins with versions that check, before doing
// the work, that the result fits the remaining budget. Without this, `printf "%01000000d%[1]s..."`
// or repeated `$x := print $x $x` would allocate without bound; the checks use upper bounds of the
// output size computed from the arguments, so nothing large is allocated before being refused.
// The other builtins (index, slice, len, comparisons, and, or, not) allocate nothing sizeable.
func (b *budget) funcs() template.FuncMap {
	return template.FuncMap{
		"print":    func(args ...any) (string, error) { return b.call(1, fmt.Sprint, args) },
		"println":  func(args ...any) (string, error) { return b.call(1, fmt.Sprintln, args) },
		"html":     func(args ...any) (string, error) { return b.call(5, template.HTMLEscaper, args) },     // '"' -> &#34;
		"js":       func(args ...any) (string, error) { return b.call(6, template.JSEscaper, args) },       // '<' -> \u003C
		"urlquery": func(args ...any) (string, error) { return b.call(3, template.URLQueryEscaper, args) }, // ' ' -> %20
		"printf":   b.printf,
	}
}

// call runs f after checking that expansion times the printed size of args fits the budget.
func (b *budget) call(expansion int, f func(...any) string, args []any) (string, error) {
	size := len(args) + 1 // separators and println's newline
	for _, a := range args {
		size += argSize(a)
	}
	if err := b.reserve(expansion * size); err != nil {
		return "", err
	}
	return b.charge(f(args...))
}

// printf bounds its output by: the format itself, plus for every '%' the largest width or
// precision the format can ask for and the largest argument expanded by maxFmtExpansion (an
// argument index such as %[1]s can print the same argument at every verb).
func (b *budget) printf(format string, args ...any) (string, error) {
	largest := 0
	for _, a := range args {
		largest = max(largest, argSize(a))
	}
	perVerb := maxFormatNumber(format) + maxFmtExpansion*largest + otherArgSize
	if err := b.reserve(len(format) + strings.Count(format, "%")*perVerb); err != nil {
		return "", err
	}
	return b.charge(fmt.Sprintf(format, args...))
}

func (b *budget) reserve(n int) error {
	if n < 0 || n > maxFuncBytes-b.built {
		return errFuncBudget
	}
	return nil
}

func (b *budget) charge(s string) (string, error) {
	b.built += len(s)
	return s, nil
}

// argSize is an upper bound of the %v size of a template value: its length for a string, the sum
// of its entries for the dot map (which the token rule no longer lets reach a function; the case
// stays so the bound holds regardless), otherArgSize for anything else (numbers, bools, nil).
func argSize(a any) int {
	switch a := a.(type) {
	case string:
		return len(a)
	case map[string]string:
		n := len("map[]")
		for k, v := range a {
			n += len(k) + len(v) + len(": ")
		}
		return n
	}
	return otherArgSize
}

// maxFormatNumber returns the largest width or precision a format can request: the largest
// decimal number in it, capped at fmt's own limit, or that limit when a '*' takes it from the
// arguments.
func maxFormatNumber(format string) int {
	if strings.Contains(format, "*") {
		return maxFmtWidth
	}
	largest, n := 0, 0
	for i := 0; i < len(format); i++ {
		if c := format[i]; c >= '0' && c <= '9' {
			n = min(n*10+int(c-'0'), maxFmtWidth)
			largest = max(largest, n)
			continue
		}
		n = 0
	}
	return largest
}

// redact replaces every occurrence of token in msg. If replacing creates a new occurrence (a
// token overlapping the marker), the whole message is withheld.
func redact(msg, token string) string {
	if token == "" || !strings.Contains(msg, token) {
		return msg
	}
	msg = strings.ReplaceAll(msg, token, redactedMarker)
	if strings.Contains(msg, token) {
		return withheldMessage
	}
	return msg
}

// redactError returns err unchanged when its message does not contain token, so errors.Is keeps
// working for the common case, and a plain error with the redacted message otherwise.
func redactError(err error, token string) error {
	if token == "" || !strings.Contains(err.Error(), token) {
		return err
	}
	return errors.New(redact(err.Error(), token))
}
