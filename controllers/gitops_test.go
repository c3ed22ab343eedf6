package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/yaml"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/token"
	"github.com/dbtoken/databricks-token-operator/internal/token/tokentest"
)

// docs/gitops.md promises how Argo CD and Flux see a credential: a table from each Ready reason
// (and the two states before the operator has caught up with a spec) to an Argo CD health status
// and a kstatus status, and the Lua health check Argo CD runs. These specs produce every row with
// the controller (Reconcile called directly, as in refresh_test.go), read the object back from the
// API server as unstructured, and evaluate it with the evaluators the tools embed: the Lua from
// the doc's argocd-cm block in gopher-lua, called the way Argo CD's util/lua calls it, and
// kstatus's status.Compute, which Flux's kustomize-controller uses. The doc is what is tested: a
// changed row or script changes the expectation, and a state the controller produces differently
// fails.

const gitopsDocPath = "../docs/gitops.md"

// argoHealthKeyPrefix is the argocd-cm key of a resource health check, followed by
// "<group>_<kind>".
const argoHealthKeyPrefix = "resource.customizations.health."

// gitopsDoc is what docs/gitops.md promises.
type gitopsDoc struct {
	// scripts are the argocd-cm health checks by key.
	scripts map[string]string
	// rows of the mapping table by rowKey.
	rows map[string]healthRow
}

// healthRow is one row of the mapping table.
type healthRow struct {
	reason, ready, argo, kstatus string
}

// rowKey names a row by its first two cells, e.g. "TokenIssued/True" or "not reconciled yet/none".
func rowKey(reason, ready string) string { return reason + "/" + ready }

// readGitOpsDoc parses the argocd-cm block and the mapping table out of docs/gitops.md.
func readGitOpsDoc() gitopsDoc {
	GinkgoHelper()
	raw, err := os.ReadFile(gitopsDocPath)
	Expect(err).NotTo(HaveOccurred())
	lines := strings.Split(string(raw), "\n")
	doc := gitopsDoc{scripts: map[string]string{}, rows: map[string]healthRow{}}

	// Every ```yaml block that configures argocd-cm health checks.
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```yaml" {
			continue
		}
		end := i + 1
		for end < len(lines) && strings.TrimSpace(lines[end]) != "```" {
			end++
		}
		block := strings.Join(lines[i+1:end], "\n")
		i = end
		if !strings.Contains(block, argoHealthKeyPrefix) {
			continue
		}
		var cm struct {
			Data map[string]string `json:"data"`
		}
		Expect(yaml.Unmarshal([]byte(block), &cm)).To(Succeed(), "the argocd-cm block in %s is not valid YAML", gitopsDocPath)
		for k, v := range cm.Data {
			if strings.HasPrefix(k, argoHealthKeyPrefix) {
				doc.scripts[k] = v
			}
		}
	}
	Expect(doc.scripts).NotTo(BeEmpty(), "%s has no argocd-cm block with %s keys", gitopsDocPath, argoHealthKeyPrefix)

	// The table whose header names Argo CD and kstatus.
	cells := func(line string) []string {
		parts := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for i, p := range parts {
			parts[i] = strings.Trim(strings.TrimSpace(p), "`*")
		}
		return parts
	}
	for i, line := range lines {
		if !strings.HasPrefix(line, "|") || !strings.Contains(line, "Argo CD") || !strings.Contains(line, "kstatus") {
			continue
		}
		header := cells(line)
		col := func(name string) int {
			i := slices.Index(header, name)
			Expect(i).To(BeNumerically(">=", 0), "the health table in %s has no column %q: %q", gitopsDocPath, name, header)
			return i
		}
		reasonCol, readyCol, argoCol, kstatusCol := col("Ready reason"), col("Ready"), col("Argo CD"), col("Flux (kstatus)")
		for _, row := range lines[i+2:] {
			if !strings.HasPrefix(row, "|") {
				break
			}
			c := cells(row)
			Expect(len(c)).To(Equal(len(header)), "malformed row in %s: %s", gitopsDocPath, row)
			r := healthRow{reason: c[reasonCol], ready: c[readyCol], argo: c[argoCol], kstatus: c[kstatusCol]}
			key := rowKey(r.reason, r.ready)
			Expect(doc.rows).NotTo(HaveKey(key), "duplicate row in %s", gitopsDocPath)
			doc.rows[key] = r
		}
		break
	}
	Expect(doc.rows).NotTo(BeEmpty(), "%s has no table with Argo CD and kstatus columns", gitopsDocPath)
	return doc
}

// argoScriptKey is the argocd-cm key Argo CD looks up for obj: "<group>_<kind>" (its
// util/lua GetConfigMapKey writes "<group>/<kind>", and argocd-cm spells the slash "_").
func argoScriptKey(obj *unstructured.Unstructured) string {
	gvk := obj.GroupVersionKind()
	return argoHealthKeyPrefix + gvk.Group + "_" + gvk.Kind
}

// argoHealth runs a health check the way Argo CD's util/lua does: a state with only the package,
// base and table libraries opened (Argo CD adds a reduced os library, which these scripts do not
// use), a one-second deadline, the live object as the global obj, and the table the chunk returns
// read as {status, message}. A status that is not one of Argo CD's health codes becomes Unknown,
// as there.
func argoHealth(script string, obj map[string]any) (healthStatus, message string, err error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return "", "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", luaValue(l, obj))
	if err := l.DoString(script); err != nil {
		return "", "", err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("expect table output from Lua script, not %s", l.Get(-1).Type())
	}
	st, ok := ret.RawGetString("status").(lua.LString)
	if !ok {
		return "", "", errors.New("the returned table has no string status")
	}
	if msg, ok := ret.RawGetString("message").(lua.LString); ok {
		message = string(msg)
	}
	switch s := string(st); s {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
		return s, message, nil
	default:
		return "Unknown", "Lua returned an invalid health status", nil
	}
}

// luaValue converts an unstructured value to Lua by Argo CD's rules: objects become tables keyed
// by string, lists become sequences (a nil element is dropped), every number becomes a Lua number,
// a json.Number a string, and anything else nil.
func luaValue(l *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case json.Number:
		return lua.LString(x)
	case int:
		return lua.LNumber(x)
	case int32:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case []any:
		t := l.CreateTable(len(x), 0)
		for _, e := range x {
			t.Append(luaValue(l, e))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetH(lua.LString(k), luaValue(l, e))
		}
		return t
	}
	return lua.LNil
}

// gitopsHarness drives one credential through Reconcile with a fake clock and a fake (or real)
// token provider, as refresh_test.go does.
type gitopsHarness struct {
	kind     kindUnderTest
	ns       string
	clk      *clocktesting.FakeClock
	fake     *tokentest.Provider
	recorder *events.FakeRecorder
	cred     client.Object
	shared   *Shared
}

const gitopsHost = "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com"

var gitopsT0 = time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)

func newGitopsHarness(kind kindUnderTest) *gitopsHarness {
	h := &gitopsHarness{kind: kind, ns: newNamespace(), clk: clocktesting.NewFakeClock(gitopsT0), recorder: events.NewFakeRecorder(100)}
	h.fake = trackFake(&tokentest.Provider{Clock: h.clk, Lifetime: time.Hour})
	h.shared = newDirectShared(h.clk, h.fake)
	h.cred = kind.build(h.ns, gitopsHost)
	*kind.fields(h.cred).RenewBefore = &metav1.Duration{Duration: 20 * time.Minute}
	DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(suiteCtx, h.cred))).To(Succeed()) })
	return h
}

// clientSecret creates the client-credentials Secret the credential refers to.
func (h *gitopsHarness) clientSecret() { newClientSecret(h.ns, "sp", "client-1") }

func (h *gitopsHarness) create() {
	ExpectWithOffset(1, k8sClient.Create(suiteCtx, h.cred)).To(Succeed())
}

// start creates the client-credentials Secret and the credential.
func (h *gitopsHarness) start() {
	h.clientSecret()
	h.create()
}

func (h *gitopsHarness) reconcileErr() error {
	_, err := h.kind.reconciler(h.shared, h.recorder).Reconcile(suiteCtx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(h.cred)})
	return err
}

func (h *gitopsHarness) reconcile() { ExpectWithOffset(1, h.reconcileErr()).To(Succeed()) }

func (h *gitopsHarness) failWith(e *token.Error) {
	h.fake.TokenFunc = func(context.Context, token.Request) (token.Token, error) { return token.Token{}, e }
}

// realProvider replaces the fake with the manager's provider, sending credentials only to hosts.
func (h *gitopsHarness) realProvider(hosts string) {
	h.shared = newDirectShared(h.clk, token.NewClientCredentials(token.Options{Clock: h.clk, AllowedHosts: token.MustParseHostPolicy(hosts)}))
}

func (h *gitopsHarness) fresh() client.Object {
	obj := h.cred.DeepCopyObject().(client.Object)
	ExpectWithOffset(1, k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(h.cred), obj)).To(Succeed())
	return obj
}

func (h *gitopsHarness) status() *v1alpha1.DatabricksCredentialStatus {
	return h.kind.status(h.fresh())
}

// ready is "<status>/<reason>" of the Ready condition, "none" without one.
func (h *gitopsHarness) ready() string {
	c := readyCondition(h.status().Conditions)
	if c.Type == "" {
		return "none"
	}
	return string(c.Status) + "/" + c.Reason
}

// live reads the credential back from the API server as the GitOps tools see it.
func (h *gitopsHarness) live() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(h.kind.name))
	ExpectWithOffset(1, k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(h.cred), u)).To(Succeed())
	return u
}

// setCABundle points the credential's caBundleRef at the ConfigMap ns/name.
func (h *gitopsHarness) setCABundle(name string) {
	switch c := h.cred.(type) {
	case *v1alpha1.DatabricksCredential:
		c.Spec.CABundleRef = &v1alpha1.CABundleReference{Name: name}
	case *v1alpha1.ClusterDatabricksCredential:
		c.Spec.CABundleRef = &v1alpha1.ClusterCABundleReference{Namespace: h.ns, Name: name}
	}
}

// gitopsCase produces the state of one table row.
type gitopsCase struct {
	// reason and ready name the row (rowKey).
	reason, ready string
	// clusterOnly: only a ClusterDatabricksCredential reports this reason.
	clusterOnly bool
	// produce brings h's credential into the state, asserting that the controller got there.
	produce func(h *gitopsHarness)
}

// Row names of the two states in which the operator has not caught up with the spec.
const (
	rowNotReconciled = "not reconciled yet"
	rowNotObserved   = "spec not observed yet"
)

// permanent produces a Ready reason that the identity provider's answer decides, from the fake
// provider's permanent (not transient) error.
func permanent(reason string) func(h *gitopsHarness) {
	return func(h *gitopsHarness) {
		h.failWith(&token.Error{Reason: reason, Code: "test", Message: "refused by the test's identity provider"})
		h.start()
		h.reconcile()
		Expect(h.fake.Calls()).To(Equal(1))
		Expect(h.ready()).To(Equal("False/" + reason))
	}
}

var transientFailure = &token.Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Code: "HTTP 503", Message: "unavailable"}

var gitopsCases = []gitopsCase{
	{reason: rowNotReconciled, ready: "none", produce: func(h *gitopsHarness) {
		h.start()
		Expect(h.live().Object).NotTo(HaveKey("status"))
	}},
	{reason: rowNotObserved, ready: "any", produce: func(h *gitopsHarness) {
		h.start()
		h.reconcile()
		Expect(h.ready()).To(Equal("True/TokenIssued"))
		obj := h.fresh()
		*h.kind.fields(obj).Scopes = []string{"sql"}
		Expect(k8sClient.Update(suiteCtx, obj)).To(Succeed())
		Expect(h.fresh().GetGeneration()).To(BeNumerically(">", h.status().ObservedGeneration))
	}},
	{reason: v1alpha1.ReasonTokenIssued, ready: "True", produce: func(h *gitopsHarness) {
		h.start()
		h.reconcile()
		Expect(h.ready()).To(Equal("True/TokenIssued"))
	}},
	{reason: v1alpha1.ReasonRefreshFailing, ready: "True", produce: func(h *gitopsHarness) {
		h.start()
		h.reconcile()
		h.failWith(transientFailure)
		h.clk.SetTime(h.status().NextRefreshTime.Time)
		h.reconcile()
		Expect(h.ready()).To(Equal("True/RefreshFailing"))
	}},
	{reason: v1alpha1.ReasonTokenPending, ready: "Unknown", produce: func(h *gitopsHarness) {
		answer := make(chan struct{})
		DeferCleanup(func() { close(answer) })
		h.fake.TokenFunc = func(ctx context.Context, _ token.Request) (token.Token, error) {
			select {
			case <-answer:
			case <-ctx.Done():
			}
			return token.Token{}, transientFailure
		}
		h.start()
		h.reconcile()
		Expect(h.ready()).To(Equal("Unknown/TokenPending"))
	}},
	{reason: v1alpha1.ReasonRefreshFailing, ready: "False", produce: func(h *gitopsHarness) {
		h.failWith(transientFailure)
		h.start()
		h.reconcile()
		Expect(h.ready()).To(Equal("False/RefreshFailing"))
	}},
	{reason: v1alpha1.ReasonTokenExpired, ready: "False", produce: func(h *gitopsHarness) {
		h.start()
		h.reconcile()
		h.failWith(transientFailure)
		h.clk.SetTime(h.status().ExpiresAt.Add(time.Second))
		h.reconcile()
		Expect(h.ready()).To(Equal("False/TokenExpired"))
	}},
	{reason: v1alpha1.ReasonSecretNotFound, ready: "False", produce: func(h *gitopsHarness) {
		h.create() // no client-credentials Secret
		h.reconcile()
		Expect(h.ready()).To(Equal("False/SecretNotFound"))
	}},
	{reason: v1alpha1.ReasonSecretKeyMissing, ready: "False", produce: func(h *gitopsHarness) {
		createReference(&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "sp"},
			Data:       map[string][]byte{"client-id": []byte("client-1")},
		})
		h.create()
		h.reconcile()
		Expect(h.ready()).To(Equal("False/SecretKeyMissing"))
	}},
	{reason: v1alpha1.ReasonInvalidClient, ready: "False", produce: permanent(v1alpha1.ReasonInvalidClient)},
	{reason: v1alpha1.ReasonNotFound, ready: "False", produce: permanent(v1alpha1.ReasonNotFound)},
	{reason: v1alpha1.ReasonUnauthorized, ready: "False", produce: permanent(v1alpha1.ReasonUnauthorized)},
	{reason: v1alpha1.ReasonInvalidSpec, ready: "False", produce: func(h *gitopsHarness) {
		// The manager's provider refuses a CA bundle without a certificate before dialling.
		h.realProvider("*.cloud.databricks.com")
		createReference(&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "no-ca"},
			Data:       map[string]string{"ca.crt": "not a certificate"},
		})
		h.setCABundle("no-ca")
		h.start()
		h.reconcile()
		Expect(h.ready()).To(Equal("False/InvalidSpec"))
	}},
	{reason: v1alpha1.ReasonInvalidTemplate, ready: "False", produce: func(h *gitopsHarness) {
		h.kind.fields(h.cred).Target.Data = map[string]string{"profiles.yml": "token: {{ .Tokn }}"}
		h.start()
		h.reconcile()
		Expect(h.ready()).To(Equal("False/InvalidTemplate"))
	}},
	{reason: v1alpha1.ReasonHostNotAllowed, ready: "False", produce: func(h *gitopsHarness) {
		// The manager's provider with an allow-list that leaves the workspace out.
		h.realProvider("127.0.0.1,localhost")
		h.start()
		h.reconcile()
		Expect(h.ready()).To(Equal("False/HostNotAllowed"))
	}},
	{reason: v1alpha1.ReasonSecretConflict, ready: "False", produce: func(h *gitopsHarness) {
		// A copy of the token Secret committed to Git: not the operator's.
		foreignSecret(h.ns, h.kind.targetName(h.cred))
		h.start()
		h.reconcile()
		Expect(h.ready()).To(Equal("False/SecretConflict"))
	}},
	{reason: v1alpha1.ReasonNoMatchingNamespaces, ready: "False", clusterOnly: true, produce: func(h *gitopsHarness) {
		h.cred.(*v1alpha1.ClusterDatabricksCredential).Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: teamLabel()}
		h.start()
		h.reconcile()
		Expect(h.ready()).To(Equal("False/NoMatchingNamespaces"))
	}},
	{reason: v1alpha1.ReasonWriteFailed, ready: "False", clusterOnly: true, produce: func(h *gitopsHarness) {
		// A ResourceQuota on Secrets in the selected namespace.
		h.shared = newDirectSharedWith(refusingSecretWrites(), h.clk, h.fake)
		h.start()
		Expect(h.reconcileErr()).To(HaveOccurred(), "the refused write is retried by the workqueue")
		Expect(h.ready()).To(Equal("False/WriteFailed"))
	}},
}

// refusingSecretWrites is a client whose Secret writes the API server refuses.
func refusingSecretWrites() client.Client {
	direct, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	refuse := func(obj client.Object) error {
		return apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, obj.GetName(), errors.New("exceeded quota: secrets"))
	}
	return interceptor.NewClient(direct, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if _, ok := obj.(*corev1.Secret); ok {
				return refuse(obj)
			}
			return c.Create(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if _, ok := obj.(*corev1.Secret); ok {
				return refuse(obj)
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
	})
}

// readyReasons are the reasons of the Ready condition that the API package declares: the Reason*
// constants documented "(True)" or "(False)" (the Event-only reasons are not), as
// test/packaging's docs test finds them.
func readyReasons() []string {
	GinkgoHelper()
	files, err := filepath.Glob("../api/v1alpha1/*_types.go")
	Expect(err).NotTo(HaveOccurred())
	re := regexp.MustCompile(`// Reason\w+ \((?:True|False|Unknown)\)(?:[^\n]*\n\s*//)*[^\n]*\n\s*Reason\w+\s*=\s*"(\w+)"`)
	var reasons []string
	for _, f := range files {
		src, err := os.ReadFile(f)
		Expect(err).NotTo(HaveOccurred())
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			reasons = append(reasons, m[1])
		}
	}
	Expect(len(reasons)).To(BeNumerically(">=", 14), "too few Ready reasons found in api/v1alpha1; has the comment format changed?")
	return reasons
}

var _ = Describe("GitOps health as docs/gitops.md documents it", func() {
	It("documents a health check for each kind and exactly the rows the controller produces, every Ready reason among them", func() {
		doc := readGitOpsDoc()
		for _, kind := range kindsUnderTest {
			Expect(doc.scripts).To(HaveKey(argoHealthKeyPrefix+v1alpha1.GroupVersion.Group+"_"+kind.name), "no Argo CD health check for %s", kind.name)
		}
		var produced, reasons []string
		for _, c := range gitopsCases {
			produced = append(produced, rowKey(c.reason, c.ready))
			reasons = append(reasons, c.reason)
		}
		var documented []string
		for k := range doc.rows {
			documented = append(documented, k)
		}
		Expect(documented).To(ConsistOf(produced), "the table's rows are the states these specs produce")
		for _, r := range readyReasons() {
			Expect(reasons).To(ContainElement(r), "no row for Ready reason %s", r)
		}
	})

	for _, c := range gitopsCases {
		for _, kind := range kindsUnderTest {
			if c.clusterOnly && kind.name != "ClusterDatabricksCredential" {
				continue
			}
			It(fmt.Sprintf("%s %s/%s: Argo CD's Lua and kstatus give what the table says", kind.name, c.ready, c.reason), func() {
				doc := readGitOpsDoc()
				row, ok := doc.rows[rowKey(c.reason, c.ready)]
				Expect(ok).To(BeTrue(), "%s has no row %q", gitopsDocPath, rowKey(c.reason, c.ready))

				h := newGitopsHarness(kind)
				c.produce(h)
				live := h.live()

				script, ok := doc.scripts[argoScriptKey(live)]
				Expect(ok).To(BeTrue(), "%s has no argocd-cm key %s", gitopsDocPath, argoScriptKey(live))
				health, message, err := argoHealth(script, live.Object)
				Expect(err).NotTo(HaveOccurred())
				Expect(health).To(Equal(row.argo), "Argo CD health (message %q)", message)
				if cond := readyCondition(h.status().Conditions); cond.Type != "" && live.GetGeneration() == h.status().ObservedGeneration {
					Expect(message).To(HavePrefix(cond.Reason+": "), "the Argo CD message leads with the reason")
				}

				res, err := status.Compute(live)
				Expect(err).NotTo(HaveOccurred())
				Expect(string(res.Status)).To(Equal(row.kstatus), "kstatus (message %q)", res.Message)
			})
		}
	}

	It("reports Progressing, not Healthy, while Ready still describes an earlier spec", func() {
		// A spec change whose Secret write the API server refuses: the pass records the new
		// generation in status.observedGeneration, but Ready keeps describing the old one. Only
		// the condition's observedGeneration tells; kstatus does not read it.
		kind := kindsUnderTest[0]
		h := newGitopsHarness(kind)
		h.start()
		h.reconcile()
		obj := h.fresh()
		kind.fields(obj).Target.Data = map[string]string{"DATABRICKS_TOKEN": "{{ .Token }}"}
		Expect(k8sClient.Update(suiteCtx, obj)).To(Succeed())
		h.shared = newDirectSharedWith(refusingSecretWrites(), h.clk, h.fake)
		Expect(h.reconcileErr()).To(HaveOccurred())
		live := h.live()
		cond := readyCondition(h.status().Conditions)
		Expect(cond.ObservedGeneration).To(BeNumerically("<", live.GetGeneration()), "Ready describes the earlier spec")

		doc := readGitOpsDoc()
		health, _, err := argoHealth(doc.scripts[argoScriptKey(live)], live.Object)
		Expect(err).NotTo(HaveOccurred())
		Expect(health).To(Equal("Progressing"))
	})
})
