package packaging

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/dbtoken/databricks-token-operator/internal/testenv"
)

const (
	chartDir       = "dist/chart"
	chartNamespace = "dbtoken-chart"
)

// everyValue sets every value of the chart to something other than its default.
const everyValue = `
replicaCount: 1
image:
  repository: registry.example.com/platform/databricks-token-operator
  tag: v0.1.0-rc.1
  pullPolicy: Always
imagePullSecrets:
- name: regcred
fullnameOverride: dbtoken
serviceAccount:
  create: true
  name: dbtoken-manager
  annotations:
    example.com/owner: platform
allowedTokenHosts:
- "*.azuredatabricks.net"
- login.microsoftonline.com
- idp.example.com
watchNamespaces:
- analytics
- dbt
tokenTimeout: 45s
maxConcurrentReconciles: 8
logLevel: debug
extraArgs:
- --kube-api-qps=100
extraEnv:
- name: HTTPS_PROXY
  value: http://proxy.example.com:3128
leaderElection:
  enabled: false
metrics:
  enabled: false
rbac:
  aggregateToDefaultRoles: false
resources:
  requests:
    cpu: 20m
    memory: 96Mi
  limits:
    memory: 128Mi
podAnnotations:
  example.com/scrape: "false"
podLabels:
  team: platform
nodeSelector:
  kubernetes.io/os: linux
tolerations:
- key: dedicated
  operator: Equal
  value: platform
  effect: NoSchedule
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            app.kubernetes.io/name: databricks-token-operator
priorityClassName: platform-critical
`

// helmTemplate renders the chart as release in chartNamespace with the given values (YAML, may
// be empty) and extra helm flags.
func helmTemplate(t *testing.T, release, values string, extra ...string) testenv.Result {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", chartNamespace}
	if values != "" {
		f := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(f, []byte(values), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--values", f)
	}
	return run(t, nil, helm(t), append(args, extra...)...)
}

func mustTemplate(t *testing.T, release, values string, extra ...string) []byte {
	t.Helper()
	r := helmTemplate(t, release, values, extra...)
	if r.Err != nil {
		t.Fatalf("helm template: %s", r)
	}
	return []byte(r.Stdout)
}

func TestChartLint(t *testing.T) {
	for name, values := range map[string]string{"defaults": "", "every value set": everyValue} {
		t.Run(name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir, "--namespace", chartNamespace}
			if values != "" {
				f := filepath.Join(t.TempDir(), "values.yaml")
				if err := os.WriteFile(f, []byte(values), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--values", f)
			}
			if r := run(t, nil, helm(t), args...); r.Err != nil {
				t.Fatalf("helm lint: %s", r)
			}
		})
	}
}

// TestChartTemplate renders the chart with several value sets, checks the manager's flags and
// which objects exist, then applies the output to the envtest apiserver with a server-side dry
// run (schema, admission and the restricted Pod Security Standard).
func TestChartTemplate(t *testing.T) {
	tests := []struct {
		name    string
		release string
		values  string
		// wantArgs must all be in the manager's args, in this order (others may be between).
		wantArgs []string
		// noArgs are flag prefixes that must not appear.
		noArgs       []string
		wantReplicas int32
		wantImage    string
		// wantObjects and noObjects are "Kind/name".
		wantObjects []string
		noObjects   []string
		check       func(t *testing.T, objs []manifest, d *appsv1.Deployment)
	}{{
		name:    "defaults",
		release: "databricks-token-operator",
		wantArgs: []string{"--leader-elect", "--health-probe-bind-address=:8081", "--metrics-bind-address=:8443",
			"--metrics-secure=true", "--token-timeout=30s", "--max-concurrent-reconciles=4", "--zap-log-level=info"},
		noArgs:       []string{"--namespaces", "--allowed-token-hosts"},
		wantReplicas: 2,
		wantImage:    "ghcr.io/dbtoken/databricks-token-operator:0.1.0",
		wantObjects: []string{
			"ServiceAccount/databricks-token-operator",
			"ClusterRole/databricks-token-operator-manager-role",
			"ClusterRoleBinding/databricks-token-operator-manager-rolebinding",
			"Role/databricks-token-operator-leader-election-role",
			"RoleBinding/databricks-token-operator-leader-election-rolebinding",
			"ClusterRole/databricks-token-operator-metrics-auth-role",
			"ClusterRoleBinding/databricks-token-operator-metrics-auth-rolebinding",
			"ClusterRole/databricks-token-operator-metrics-reader",
			"ClusterRole/databricks-token-operator-databrickscredential-editor-role",
			"ClusterRole/databricks-token-operator-databrickscredential-viewer-role",
			"Service/databricks-token-operator-metrics",
			"Deployment/databricks-token-operator-controller-manager",
		},
		check: func(t *testing.T, objs []manifest, d *appsv1.Deployment) {
			var svc corev1.Service
			decode(t, *find(objs, "Service", "databricks-token-operator-metrics"), &svc)
			if p := svc.Spec.Ports[0]; p.Name != "https" || p.Port != 8443 || p.TargetPort.String() != "metrics" {
				t.Errorf("metrics Service port = %+v, want https 8443 -> metrics", p)
			}
			if !reflect.DeepEqual(svc.Spec.Selector, d.Spec.Selector.MatchLabels) {
				t.Errorf("metrics Service selects %v, Deployment pods are %v", svc.Spec.Selector, d.Spec.Selector.MatchLabels)
			}
			if sa := d.Spec.Template.Spec.ServiceAccountName; sa != "databricks-token-operator" {
				t.Errorf("serviceAccountName = %q", sa)
			}
		},
	}, {
		name:    "every value set",
		release: "dbtoken",
		values:  everyValue,
		wantArgs: []string{"--health-probe-bind-address=:8081", "--metrics-bind-address=0",
			"--allowed-token-hosts=*.azuredatabricks.net,login.microsoftonline.com,idp.example.com",
			"--namespaces=analytics,dbt", "--token-timeout=45s", "--max-concurrent-reconciles=8",
			"--zap-log-level=debug", "--kube-api-qps=100"},
		noArgs:       []string{"--leader-elect", "--metrics-secure"},
		wantReplicas: 1,
		wantImage:    "registry.example.com/platform/databricks-token-operator:v0.1.0-rc.1",
		wantObjects: []string{
			"ServiceAccount/dbtoken-manager",
			"ClusterRole/dbtoken-manager-role",
			"ClusterRoleBinding/dbtoken-manager-rolebinding",
			"Role/dbtoken-manager-role", // in analytics and in dbt
			"RoleBinding/dbtoken-manager-rolebinding",
			"Role/dbtoken-manager-events-role", // in default
			"RoleBinding/dbtoken-manager-events-rolebinding",
			"Deployment/dbtoken-controller-manager",
		},
		noObjects: []string{
			"Role/dbtoken-leader-election-role",
			"RoleBinding/dbtoken-leader-election-rolebinding",
			"ClusterRole/dbtoken-metrics-auth-role",
			"ClusterRole/dbtoken-metrics-reader",
			"ClusterRole/dbtoken-databrickscredential-editor-role",
			"Service/dbtoken-metrics",
		},
		check: func(t *testing.T, objs []manifest, d *appsv1.Deployment) {
			pod := d.Spec.Template
			c := pod.Spec.Containers[0]
			if len(c.Env) != 1 || c.Env[0].Name != "HTTPS_PROXY" {
				t.Errorf("env = %+v, want HTTPS_PROXY", c.Env)
			}
			if c.ImagePullPolicy != corev1.PullAlways {
				t.Errorf("imagePullPolicy = %q", c.ImagePullPolicy)
			}
			if got := c.Resources.Requests.Memory().String(); got != "96Mi" {
				t.Errorf("memory request = %s", got)
			}
			if len(c.Ports) != 1 || c.Ports[0].Name != "probes" {
				t.Errorf("with metrics off only the probe port is exposed, got %+v", c.Ports)
			}
			if pod.Spec.ServiceAccountName != "dbtoken-manager" {
				t.Errorf("serviceAccountName = %q", pod.Spec.ServiceAccountName)
			}
			if pod.Spec.PriorityClassName != "platform-critical" {
				t.Errorf("priorityClassName = %q", pod.Spec.PriorityClassName)
			}
			if len(pod.Spec.ImagePullSecrets) != 1 || pod.Spec.ImagePullSecrets[0].Name != "regcred" {
				t.Errorf("imagePullSecrets = %v", pod.Spec.ImagePullSecrets)
			}
			if pod.Spec.NodeSelector["kubernetes.io/os"] != "linux" || len(pod.Spec.Tolerations) != 1 || pod.Spec.Affinity == nil {
				t.Errorf("scheduling values not applied: nodeSelector %v, tolerations %v, affinity %v", pod.Spec.NodeSelector, pod.Spec.Tolerations, pod.Spec.Affinity)
			}
			if pod.Annotations["example.com/scrape"] != "false" || pod.Annotations["kubectl.kubernetes.io/default-container"] != "manager" {
				t.Errorf("pod annotations = %v", pod.Annotations)
			}
			if pod.Labels["team"] != "platform" {
				t.Errorf("pod labels = %v", pod.Labels)
			}
			var sa corev1.ServiceAccount
			decode(t, *find(objs, "ServiceAccount", "dbtoken-manager"), &sa)
			if sa.Annotations["example.com/owner"] != "platform" {
				t.Errorf("ServiceAccount annotations = %v", sa.Annotations)
			}
			var binding rbacv1.ClusterRoleBinding
			decode(t, *find(objs, "ClusterRoleBinding", "dbtoken-manager-rolebinding"), &binding)
			if s := binding.Subjects[0]; s.Name != "dbtoken-manager" || s.Namespace != chartNamespace {
				t.Errorf("manager ClusterRoleBinding subject = %+v", s)
			}
			var roleNamespaces []string
			for _, o := range objs {
				if o.Kind == "Role" && o.Name == "dbtoken-manager-role" {
					roleNamespaces = append(roleNamespaces, o.Namespace)
				}
			}
			slices.Sort(roleNamespaces)
			if !slices.Equal(roleNamespaces, []string{"analytics", "dbt"}) {
				t.Errorf("manager Roles in %v, want in analytics and dbt", roleNamespaces)
			}
		},
	}, {
		name:    "plain-HTTP metrics and three replicas",
		release: "dbtoken",
		values: `replicaCount: 3
metrics:
  secure: false
  port: 8080
`,
		wantArgs:     []string{"--leader-elect", "--metrics-bind-address=:8080", "--metrics-secure=false"},
		wantReplicas: 3,
		wantImage:    "ghcr.io/dbtoken/databricks-token-operator:0.1.0",
		wantObjects:  []string{"Service/dbtoken-databricks-token-operator-metrics", "Role/dbtoken-databricks-token-operator-leader-election-role"},
		noObjects:    []string{"ClusterRole/dbtoken-databricks-token-operator-metrics-auth-role", "ClusterRole/dbtoken-databricks-token-operator-metrics-reader"},
		check: func(t *testing.T, objs []manifest, d *appsv1.Deployment) {
			var svc corev1.Service
			decode(t, *find(objs, "Service", "dbtoken-databricks-token-operator-metrics"), &svc)
			if p := svc.Spec.Ports[0]; p.Name != "http" || p.Port != 8080 {
				t.Errorf("metrics Service port = %+v, want http 8080", p)
			}
			if p := d.Spec.Template.Spec.Containers[0].Ports[0]; p.Name != "metrics" || p.ContainerPort != 8080 {
				t.Errorf("metrics container port = %+v", p)
			}
		},
	}}
	// The namespaces of everyValue's watchNamespaces, where its Roles go.
	for _, ns := range []string{chartNamespace, "analytics", "dbt"} {
		ensureNamespace(t, ns)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := mustTemplate(t, tt.release, tt.values, "--include-crds")
			objs := parseManifests(t, out)
			var d appsv1.Deployment
			decode(t, only(t, objs, "Deployment"), &d)
			if n := len(d.Spec.Template.Spec.Containers); n != 1 {
				t.Fatalf("want one container, got %d", n)
			}
			c := d.Spec.Template.Spec.Containers[0]
			if !isSubsequence(c.Args, tt.wantArgs) {
				t.Errorf("manager args = %q, want %q in this order", c.Args, tt.wantArgs)
			}
			for _, prefix := range tt.noArgs {
				for _, a := range c.Args {
					if strings.HasPrefix(a, prefix) {
						t.Errorf("manager args contain %q, want no %s", a, prefix)
					}
				}
			}
			if d.Spec.Replicas == nil || *d.Spec.Replicas != tt.wantReplicas {
				t.Errorf("replicas = %v, want %d", d.Spec.Replicas, tt.wantReplicas)
			}
			if c.Image != tt.wantImage {
				t.Errorf("image = %q, want %q", c.Image, tt.wantImage)
			}
			for _, ko := range tt.wantObjects {
				kind, name, _ := strings.Cut(ko, "/")
				if find(objs, kind, name) == nil {
					t.Errorf("missing %s; rendered %v", ko, names(objs))
				}
			}
			for _, ko := range tt.noObjects {
				kind, name, _ := strings.Cut(ko, "/")
				if find(objs, kind, name) != nil {
					t.Errorf("unexpected %s", ko)
				}
			}
			for _, o := range objs {
				if o.Kind == "Namespace" {
					t.Errorf("the chart must not create Namespaces (helm install --create-namespace does): %s", o.Name)
				}
			}
			if tt.check != nil {
				tt.check(t, objs, &d)
			}
			r := dryRunApply(t, out)
			wantAllApplied(t, r, objs)
		})
	}
}

// TestChartRefusesBadValues checks the chart's own guards and its values schema.
func TestChartRefusesBadValues(t *testing.T) {
	for _, tt := range []struct{ name, values, wantErr string }{
		{"several replicas without leader election", "replicaCount: 2\nleaderElection:\n  enabled: false\n", "needs leaderElection.enabled=true"},
		{"existing ServiceAccount without a name", "serviceAccount:\n  create: false\n", "needs serviceAccount.name"},
		{"unknown log level", "logLevel: verbose\n", "logLevel"},
		{"hosts as a string", "allowedTokenHosts: login.microsoftonline.com\n", "allowedTokenHosts"},
		{"host with a scheme", "allowedTokenHosts: [\"https://idp.example.com\"]\n", "allowedTokenHosts"},
		{"timeout without a unit", "tokenTimeout: \"30\"\n", "tokenTimeout"},
		{"a namespace twice", "watchNamespaces: [analytics, dbt, analytics]\n", "watchNamespaces"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := helmTemplate(t, "dbtoken", tt.values)
			if r.Err == nil {
				t.Fatalf("helm template succeeded, want an error mentioning %q", tt.wantErr)
			}
			if !strings.Contains(r.Stderr, tt.wantErr) {
				t.Fatalf("error does not mention %q:\n%s", tt.wantErr, r.Stderr)
			}
		})
	}
}

// TestChartCRDsMatchGenerated: the chart's crds/ must be exactly config/crd/bases (`make helm-crds`).
func TestChartCRDsMatchGenerated(t *testing.T) {
	generated, err := filepath.Glob(filepath.Join(repoRoot, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(generated) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v)", err)
	}
	inChart, err := filepath.Glob(filepath.Join(repoRoot, chartDir, "crds", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	base := func(paths []string) []string {
		out := make([]string, len(paths))
		for i, p := range paths {
			out[i] = filepath.Base(p)
		}
		return out
	}
	if !slices.Equal(base(generated), base(inChart)) {
		t.Fatalf("%s/crds holds %v, config/crd/bases holds %v: run `make helm-crds`", chartDir, base(inChart), base(generated))
	}
	for _, g := range generated {
		rel := filepath.Join(chartDir, "crds", filepath.Base(g))
		want, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, rel); !bytes.Equal(got, want) {
			t.Errorf("%s differs from config/crd/bases: run `make helm-crds`. First difference at %s", rel, firstDiff(got, want))
		}
	}
}

// TestChartRBACMatchesConfig: every role of the chart grants exactly what its counterpart in
// config/rbac grants. The manager role is generated from the controller's RBAC markers, so a new
// permission there must reach the chart too: in the cluster-wide ClusterRole, and with
// watchNamespaces in the ClusterRole or the per-namespace Role, depending on the resource's scope.
func TestChartRBACMatchesConfig(t *testing.T) {
	t.Run("watchNamespaces", namespacedRBACMatchesConfig)
	objs := parseManifests(t, mustTemplate(t, "databricks-token-operator", ""))
	for _, tt := range []struct{ kind, chartName, configFile string }{
		{"ClusterRole", "databricks-token-operator-manager-role", "config/rbac/role.yaml"},
		{"Role", "databricks-token-operator-leader-election-role", "config/rbac/leader_election_role.yaml"},
		{"ClusterRole", "databricks-token-operator-metrics-auth-role", "config/rbac/metrics_auth_role.yaml"},
		{"ClusterRole", "databricks-token-operator-metrics-reader", "config/rbac/metrics_reader_role.yaml"},
		{"ClusterRole", "databricks-token-operator-databrickscredential-editor-role", "config/rbac/databrickscredential_editor_role.yaml"},
		{"ClusterRole", "databricks-token-operator-databrickscredential-viewer-role", "config/rbac/databrickscredential_viewer_role.yaml"},
	} {
		t.Run(tt.configFile, func(t *testing.T) {
			m := find(objs, tt.kind, tt.chartName)
			if m == nil {
				t.Fatalf("the chart renders no %s %s", tt.kind, tt.chartName)
			}
			var chartRole, configRole rbacv1.ClusterRole // Role has the same shape
			decode(t, *m, &chartRole)
			decode(t, only(t, parseManifests(t, readFile(t, tt.configFile)), tt.kind), &configRole)
			if !reflect.DeepEqual(chartRole.Rules, configRole.Rules) {
				t.Errorf("rules of %s %s differ from %s\nchart:  %+v\nconfig: %+v", tt.kind, tt.chartName, tt.configFile, chartRole.Rules, configRole.Rules)
			}
			if !reflect.DeepEqual(chartRole.Labels["rbac.authorization.k8s.io/aggregate-to-view"], configRole.Labels["rbac.authorization.k8s.io/aggregate-to-view"]) ||
				!reflect.DeepEqual(chartRole.Labels["rbac.authorization.k8s.io/aggregate-to-edit"], configRole.Labels["rbac.authorization.k8s.io/aggregate-to-edit"]) {
				t.Errorf("aggregation labels of %s differ from %s: %v vs %v", tt.chartName, tt.configFile, chartRole.Labels, configRole.Labels)
			}
		})
	}
}

// TestChartHardeningMatchesConfig: the chart's manager pod is as locked down as
// config/manager/manager.yaml's, and probes the same endpoints.
func TestChartHardeningMatchesConfig(t *testing.T) {
	var chart, config appsv1.Deployment
	decode(t, only(t, parseManifests(t, mustTemplate(t, "databricks-token-operator", "")), "Deployment"), &chart)
	decode(t, only(t, parseManifests(t, readFile(t, "config/manager/manager.yaml")), "Deployment"), &config)
	cp, pp := chart.Spec.Template.Spec, config.Spec.Template.Spec
	if !reflect.DeepEqual(cp.SecurityContext, pp.SecurityContext) {
		t.Errorf("pod securityContext = %+v, config/manager has %+v", cp.SecurityContext, pp.SecurityContext)
	}
	cc, pc := cp.Containers[0], pp.Containers[0]
	if !reflect.DeepEqual(cc.SecurityContext, pc.SecurityContext) {
		t.Errorf("container securityContext = %+v, config/manager has %+v", cc.SecurityContext, pc.SecurityContext)
	}
	if !reflect.DeepEqual(cc.Command, pc.Command) || !reflect.DeepEqual(cc.VolumeMounts, pc.VolumeMounts) || !reflect.DeepEqual(cp.Volumes, pp.Volumes) {
		t.Errorf("command, volumes or mounts differ from config/manager: %v %v %v", cc.Command, cc.VolumeMounts, cp.Volumes)
	}
	for _, probe := range []struct{ chart, config *corev1.Probe }{{cc.LivenessProbe, pc.LivenessProbe}, {cc.ReadinessProbe, pc.ReadinessProbe}} {
		if probe.chart == nil || probe.config == nil || probe.chart.HTTPGet.Path != probe.config.HTTPGet.Path {
			t.Errorf("probe %+v differs from config/manager's %+v", probe.chart, probe.config)
		}
	}
	if !reflect.DeepEqual(cc.Resources, pc.Resources) {
		t.Errorf("default resources %+v differ from config/manager's %+v", cc.Resources, pc.Resources)
	}
}

// isSubsequence reports whether want appears in got in order.
func isSubsequence(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestChartInstall installs and uninstalls the chart for real against the envtest apiserver (no
// pods run there; the point is Helm's own checks and the NOTES), with the defaults and with every
// value set.
func TestChartInstall(t *testing.T) {
	cfg := apiServer(t).Kubeconfig
	for _, ns := range []string{chartNamespace, "analytics", "dbt"} {
		ensureNamespace(t, ns)
	}
	for _, tt := range []struct {
		name, release, values string
		wantNotes, noNotes    []string
	}{{
		name:    "defaults",
		release: "databricks-token-operator",
		wantNotes: []string{
			"deployment/databricks-token-operator-controller-manager",
			"kubectl -n analytics wait --for=condition=Ready dbcred/dbt-prod",
			"public Databricks and Microsoft Entra ID login hosts",
			"https://databricks-token-operator-metrics." + chartNamespace + ".svc:8443/metrics",
		},
	}, {
		name:    "every value set",
		release: "dbtoken",
		values:  everyValue,
		wantNotes: []string{
			"deployment/dbtoken-controller-manager",
			"the operator watches only: analytics, dbt",
			"Client credentials are sent only to: *.azuredatabricks.net, login.microsoftonline.com, idp.example.com.",
		},
		noNotes: []string{"Metrics:"},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"install", tt.release, chartDir, "--namespace", chartNamespace, "--kubeconfig", cfg}
			if tt.values != "" {
				f := filepath.Join(t.TempDir(), "values.yaml")
				if err := os.WriteFile(f, []byte(tt.values), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--values", f)
			}
			t.Setenv("KUBECONFIG", cfg)
			r := run(t, nil, helm(t), args...)
			if r.Err != nil {
				t.Fatalf("helm install: %s", r)
			}
			t.Cleanup(func() {
				if r := run(t, nil, helm(t), "uninstall", tt.release, "--namespace", chartNamespace, "--kubeconfig", cfg); r.Err != nil {
					t.Errorf("helm uninstall: %s", r)
				}
			})
			for _, want := range tt.wantNotes {
				if !strings.Contains(r.Stdout, want) {
					t.Errorf("NOTES lack %q:\n%s", want, r.Stdout)
				}
			}
			for _, no := range tt.noNotes {
				if strings.Contains(r.Stdout, no) {
					t.Errorf("NOTES contain %q:\n%s", no, r.Stdout)
				}
			}
		})
	}
}
