package packaging

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const apiReference = "docs/api-reference.md"

// TestAPIReferenceUpToDate regenerates docs/api-reference.md from config/crd/bases, as `make docs`
// does, and compares it with the committed file.
func TestAPIReferenceUpToDate(t *testing.T) {
	out := filepath.Join(t.TempDir(), "api-reference.md")
	if r := run(t, nil, "go", "run", "./hack/crd-ref-docs", "-out", out, "config/crd/bases"); r.Err != nil {
		t.Fatalf("go run ./hack/crd-ref-docs: %s", r)
	}
	generated, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	committed := readFile(t, apiReference)
	if !bytes.Equal(committed, generated) {
		t.Fatalf("%s is stale: run `make docs` and commit it. First difference at %s", apiReference, firstDiff(committed, generated))
	}
}

// TestDocsCoverEveryReadyReason: docs/troubleshooting.md has a section for every Ready reason the
// API package declares.
func TestDocsCoverEveryReadyReason(t *testing.T) {
	types := string(readFile(t, "api/v1alpha1/databrickscredential_types.go"))
	// Reasons of the Ready condition are the Reason* constants with a "(True)" or "(False)" doc line.
	re := regexp.MustCompile(`// Reason\w+ \((?:True|False)\)(?:[^\n]*\n\s*//)*[^\n]*\n\s*Reason\w+\s*=\s*"(\w+)"`)
	matches := re.FindAllStringSubmatch(types, -1)
	if len(matches) < 12 {
		t.Fatalf("found only %d Ready reasons in the API package; has the comment format changed?", len(matches))
	}
	doc := string(readFile(t, "docs/troubleshooting.md"))
	for _, m := range matches {
		if !strings.Contains(doc, "### `"+m[1]+"`") {
			t.Errorf("docs/troubleshooting.md has no section \"### `%s`\"", m[1])
		}
	}
}

// TestDocsLinksResolve: relative links in docs/ point at files that exist, and their #anchors at
// headings of the linked file.
func TestDocsLinksResolve(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs (%v)", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(stripCode(string(b)), -1) {
			target, anchor := m[1], strings.TrimPrefix(m[2], "#")
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			linked := f
			if target != "" {
				linked = filepath.Join(filepath.Dir(f), target)
				if _, err := os.Stat(linked); err != nil {
					t.Errorf("%s links to %s, which does not exist", filepath.Base(f), target)
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(linked, ".md") {
				continue
			}
			lb, err := os.ReadFile(linked)
			if err != nil {
				t.Fatal(err)
			}
			if !hasAnchor(string(lb), anchor) {
				t.Errorf("%s links to %s#%s, which has no such heading", filepath.Base(f), filepath.Base(linked), anchor)
			}
		}
	}
}

var (
	mdLink    = regexp.MustCompile(`\]\(([^)#\s]*)(#[^)\s]*)?\)`)
	fenced    = regexp.MustCompile("(?s)```.*?```")
	inline    = regexp.MustCompile("`[^`\n]*`")
	mdHeading = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)
)

// stripCode removes fenced blocks and code spans, where brackets are not links.
func stripCode(s string) string {
	return inline.ReplaceAllString(fenced.ReplaceAllString(s, ""), "")
}

// hasAnchor reports whether a heading of doc has GitHub's anchor: lower case, punctuation other
// than '-' and '_' dropped, spaces turned into '-'.
func hasAnchor(doc, anchor string) bool {
	for _, m := range mdHeading.FindAllStringSubmatch(fenced.ReplaceAllString(doc, ""), -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r > 127:
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		if b.String() == anchor {
			return true
		}
	}
	return false
}
