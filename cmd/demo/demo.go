package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/controllers"
	"github.com/dbtoken/databricks-token-operator/internal/kubecache"
	"github.com/dbtoken/databricks-token-operator/internal/testenv"
	"github.com/dbtoken/databricks-token-operator/internal/token"
	"github.com/dbtoken/databricks-token-operator/test/idp"
	"github.com/dbtoken/databricks-token-operator/test/workspace"
)

// Defaults: two-minute tokens renewed one minute before they expire give a refresh about every
// minute, so a three-minute run shows a few.
const (
	DefaultTokenLifetime = 2 * time.Minute
	DefaultRenewBefore   = time.Minute
)

// The demo's names. The tenant and application IDs are made up (random GUIDs).
const (
	namespace      = "demo"
	credentialName = "dbt-prod"
	targetName     = "dbt-prod-token"
	spSecretName   = "dbt-sp"
	caConfigMap    = "entra-ca"
	tenantID       = "3c1f7e2a-5b8d-4e6f-9a0b-1c2d3e4f5a6b"
	clientID       = "b6d2e8a4-7c3f-4a1e-8d5b-9f0e1a2b3c4d"
	allowedHosts   = "127.0.0.1,localhost"
)

// Config is what a demo run needs. The zero value works from anywhere inside the repository.
type Config struct {
	// AssetsDir holds the kube-apiserver and etcd binaries (KUBEBUILDER_ASSETS). Default: the
	// directory hack/setup-envtest.sh prints, after building them on its first run.
	AssetsDir string
	// Dir receives the kubeconfig (removed at the end) and manager.log (kept). Default: a new
	// directory under os.TempDir.
	Dir string
	// Duration is how long the demo runs once the credential is applied; 0 runs until ctx ends.
	Duration time.Duration
	// TokenLifetime is the lifetime of the tokens the fake Entra ID issues (whole seconds).
	TokenLifetime time.Duration
	// RenewBefore is the credential's spec.renewBefore.
	RenewBefore time.Duration
	// PollInterval is how often the narrator looks at the credential and its Secret. Default 250ms.
	PollInterval time.Duration
	// OnIdP, if set, is called with the started identity provider (tests read IssuedTokens).
	OnIdP func(*idp.Server)
}

func (c *Config) setDefaults() error {
	if c.TokenLifetime == 0 {
		c.TokenLifetime = DefaultTokenLifetime
	}
	if c.RenewBefore == 0 {
		c.RenewBefore = DefaultRenewBefore
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	switch {
	case c.TokenLifetime < 2*time.Second || c.TokenLifetime%time.Second != 0:
		return fmt.Errorf("token lifetime %s: must be whole seconds, at least 2s", c.TokenLifetime)
	case c.RenewBefore < time.Second || c.RenewBefore%time.Second != 0:
		return fmt.Errorf("renewBefore %s: must be whole seconds, at least 1s", c.RenewBefore)
	case c.Duration < 0:
		return fmt.Errorf("duration %s: must not be negative", c.Duration)
	}
	return nil
}

// run is the whole demo: set up, apply the credential, narrate until ctx ends or Duration
// elapses, tear everything down. It fails when the credential never became Ready, no consumer
// call succeeded, or a consumer call failed while the credential was Ready.
func run(ctx context.Context, cfg Config, out io.Writer) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	n := newNarrator(out)

	// Teardown runs in reverse order of setup, also when setup fails half-way.
	var cleanups []func()
	defer func() {
		if len(cleanups) > 1 {
			n.say("stopping the operator, the fake Entra ID and workspace, kube-apiserver and etcd")
		}
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()

	dir := cfg.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "dbtoken-demo-"); err != nil {
			return err
		}
	}
	logPath := filepath.Join(dir, "manager.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() {
		_ = logFile.Close()
		n.say("done; the manager log is kept at %s", logPath)
	})
	logger := zap.New(zap.WriteTo(logFile), zap.ConsoleEncoder())
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)

	assets := cfg.AssetsDir
	if assets == "" {
		if assets, err = setupEnvtest(ctx, n); err != nil {
			return err
		}
	}

	n.say("starting kube-apiserver and etcd (envtest) with the DatabricksCredential CRD from config/crd/bases")
	// The kubeconfig goes into dir; stopping the control plane removes it.
	cp, err := testenv.Start(ctx, testenv.Options{AssetsDir: assets, Dir: dir})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() {
		if err := cp.Stop(); err != nil {
			n.say("%v", err)
		}
	})
	// cmd/manager's defaults; client-go's (5 QPS) would throttle the narrator's polling.
	restCfg := rest.CopyConfig(cp.Config)
	restCfg.QPS, restCfg.Burst = 50, 100
	n.say("kube-apiserver is up; to look around from another terminal:")
	n.block(fmt.Sprintf("export KUBECONFIG=%s; kubectl get dbcred,secrets -n %s", cp.Kubeconfig, namespace))

	idpServer, err := idp.Start(idp.Options{TokenLifetime: cfg.TokenLifetime})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, idpServer.Close)
	if cfg.OnIdP != nil {
		cfg.OnIdP(idpServer)
	}
	clientSecret := newClientSecret()
	idpServer.AddAzureApp(tenantID, clientID, clientSecret)
	n.say("fake Entra ID at %s (tenant %s, app %s; access tokens live %s)", idpServer.URL(), tenantID, clientID, cfg.TokenLifetime)

	ws, err := workspace.Start(workspace.Options{Validator: idpServer, Audiences: []string{idp.AzureDatabricksResourceID}})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, ws.Close)
	n.say("fake Azure Databricks workspace at %s (accepts only unexpired Entra tokens for AzureDatabricks)", ws.URL())

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	stopManager, err := startManager(ctx, restCfg, scheme)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, stopManager)
	n.say("operator running in-process (--allowed-token-hosts=%s); its log: %s", allowedHosts, logPath)

	c, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	cred, err := applyObjects(ctx, c, n, idpServer, ws, cfg, clientSecret)
	if err != nil {
		return err
	}

	runCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
		n.say("watching for %s (Ctrl-C stops earlier); expect a new token about every %s",
			cfg.Duration, refreshEvery(cfg.TokenLifetime, cfg.RenewBefore))
	} else {
		n.say("watching until Ctrl-C (DEMO_DURATION=200s stops by itself); expect a new token about every %s",
			refreshEvery(cfg.TokenLifetime, cfg.RenewBefore))
	}
	w := &watcher{n: n, c: c, cred: client.ObjectKeyFromObject(cred), target: client.ObjectKey{Namespace: namespace, Name: targetName},
		consumer: &consumer{hc: ws.Client()}}
	w.watch(runCtx, cfg.PollInterval)
	if ctx.Err() != nil {
		n.say("interrupted")
	}
	n.say("summary: %s, %s, %d of %d consumer connections ok", readyText(w.readySeen),
		plural(w.refreshes, "refresh", "refreshes"), w.consumerOK, w.consumerOK+w.consumerFailed)

	switch {
	case !w.readySeen:
		return errors.New("the credential never became Ready; see the manager log")
	case w.consumerOK == 0:
		return errors.New("no consumer call succeeded")
	case w.consumerFailed > 0:
		return fmt.Errorf("%d consumer call(s) failed while the credential was Ready", w.consumerFailed)
	}
	return nil
}

// setupEnvtest runs hack/setup-envtest.sh, relaying its progress lines, and returns the assets
// directory it prints last.
func setupEnvtest(ctx context.Context, n *narrator) (string, error) {
	n.say("preparing kube-apiserver and etcd with hack/setup-envtest.sh: the first run builds them from source (several minutes); later runs reuse the cache")
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			n.say("  %s", sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	assets, err := testenv.ToolPath(ctx, pw, "hack/setup-envtest.sh")
	_ = pw.Close()
	<-done
	if err != nil {
		return "", fmt.Errorf("hack/setup-envtest.sh: %w", err)
	}
	return assets, nil
}

// startManager runs the manager as cmd/manager wires it: the real clock, the client-credentials
// provider with the demo's host allow-list and the system roots (the credential brings the
// identity provider's CA through caBundleRef), and the controller's cache options. It returns a
// function that stops it and waits.
func startManager(ctx context.Context, restCfg *rest.Config, scheme *runtime.Scheme) (func(), error) {
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  kubecache.ManagerCacheOptions(nil),
		// Tests may run the demo more than once per process; controller names are global.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	mgrCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if err := controllers.Setup(mgrCtx, mgr, controllers.Options{
		TokenOptions: token.Options{AllowedHosts: token.MustParseHostPolicy(allowedHosts)},
		// Tests may run the demo more than once per process: a registry per run.
		Registry: prometheus.NewRegistry(),
	}); err != nil {
		cancel()
		return nil, fmt.Errorf("setting up the controllers: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mgrCtx) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				ctrl.Log.Error(err, "manager stopped with an error")
			}
		case <-time.After(time.Minute):
			ctrl.Log.Info("manager did not stop within a minute")
		}
	}, nil
}

// manifest is the DatabricksCredential the demo applies, as a platform engineer would write it.
// ${...} are filled in at run time; {{ ... }} are the operator's own templates.
const manifest = `apiVersion: dbtoken.io/v1alpha1
kind: DatabricksCredential
metadata:
  name: ${NAME}
  namespace: ${NAMESPACE}
spec:
  host: ${WORKSPACE_URL}        # the fake Azure Databricks workspace
  azure:
    tenantID: ${TENANT_ID}
    authorityHost: ${IDP_URL}   # the fake Entra ID
    clientSecretRef:
      name: ${SP_SECRET}        # keys client-id and client-secret
  caBundleRef:
    name: ${CA_CONFIGMAP}       # trust the fake Entra ID's CA (key ca.crt)
  renewBefore: ${RENEW_BEFORE}
  target:
    name: ${TARGET}
    data:
      DATABRICKS_HOST: "{{ .Host }}"
      DATABRICKS_TOKEN: "{{ .Token }}"
      profiles.yml: |
        databricks_demo:
          target: prod
          outputs:
            prod:
              type: databricks
              host: {{ .Hostname }}
              http_path: ${HTTP_PATH}
              catalog: main
              schema: analytics
              threads: 4
              token: {{ .Token }}
`

// applyObjects creates the namespace, the service principal's Secret, the CA ConfigMap and the
// credential, narrating each.
func applyObjects(ctx context.Context, c client.Client, n *narrator, id *idp.Server, ws *workspace.Server, cfg Config, clientSecret string) (*v1alpha1.DatabricksCredential, error) {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: spSecretName},
			StringData: map[string]string{"client-id": clientID, "client-secret": clientSecret},
		},
		&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: caConfigMap},
			Data:       map[string]string{"ca.crt": string(id.CACertPEM())},
		},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return nil, fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	n.say("created namespace %s, Secret %s (the service principal's client-id and client-secret, the only long-lived credential) and ConfigMap %s (the fake Entra ID's CA)",
		namespace, spSecretName, caConfigMap)

	text := strings.NewReplacer(
		"${NAME}", credentialName, "${NAMESPACE}", namespace, "${WORKSPACE_URL}", ws.URL(),
		"${TENANT_ID}", tenantID, "${IDP_URL}", id.URL(), "${SP_SECRET}", spSecretName,
		"${CA_CONFIGMAP}", caConfigMap, "${RENEW_BEFORE}", cfg.RenewBefore.String(),
		"${TARGET}", targetName, "${HTTP_PATH}", ws.HTTPPath(),
	).Replace(manifest)
	text = alignComments(text)
	cred := &v1alpha1.DatabricksCredential{}
	if err := yaml.UnmarshalStrict([]byte(text), cred); err != nil {
		return nil, fmt.Errorf("the demo manifest: %w", err)
	}
	if err := c.Create(ctx, cred); err != nil {
		return nil, fmt.Errorf("creating the DatabricksCredential: %w", err)
	}
	n.say("applied DatabricksCredential %s/%s:", namespace, credentialName)
	n.block(text)
	return cred, nil
}

// alignComments lines up the trailing "# ..." comments of a YAML text, whose columns the
// substituted URLs have shifted.
func alignComments(text string) string {
	lines := strings.Split(text, "\n")
	width := 0
	code := make([]string, len(lines))
	comment := make([]string, len(lines))
	for i, l := range lines {
		if j := strings.Index(l, "  # "); j > 0 && strings.TrimSpace(l[:j]) != "" {
			code[i], comment[i] = strings.TrimRight(l[:j], " "), l[j+2:]
			width = max(width, len(code[i]))
		}
	}
	for i := range lines {
		if comment[i] != "" {
			lines[i] = fmt.Sprintf("%-*s  %s", width, code[i], comment[i])
		}
	}
	return strings.Join(lines, "\n")
}

// refreshEvery is the steady-state refresh period: lifetime − renewBefore, or half the lifetime
// when renewBefore is clamped.
func refreshEvery(lifetime, renewBefore time.Duration) time.Duration {
	if renewBefore >= lifetime {
		renewBefore = lifetime / 2
	}
	return lifetime - renewBefore
}

// newClientSecret returns a random secret in the shape of an Entra client secret value.
func newClientSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "dem8Q~" + hex.EncodeToString(b)
}

func readyText(ready bool) string {
	if ready {
		return "the credential became Ready"
	}
	return "the credential never became Ready"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
