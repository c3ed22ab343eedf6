package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// committedImage is the image line dist/install.yaml is committed with.
const committedImage = "ghcr.io/dbtoken/databricks-token-operator:latest"

// TestCluster installs the operator from dist/install.yaml, checks it and uninstalls it, then
// installs it with the Helm chart and runs every check on that install, then uninstalls it. The
// steps share the cluster and run in order.
func TestCluster(t *testing.T) {
	if !t.Run("dist/install.yaml", testInstaller) {
		t.Log("dist/install.yaml failed; going on with the Helm chart (its checks are independent)")
	}
	t.Run("helm chart", testHelm)
}

// renderInstaller is dist/install.yaml with its one image line pointed at the local image, as a
// user who mirrors the image would do (`sed`); nothing else differs. The local tag is not
// "latest", so the default pull policy is IfNotPresent and the kubelet uses the imported image.
func renderInstaller(t *testing.T) []byte {
	t.Helper()
	orig, err := os.ReadFile(filepath.Join(repoRoot, "dist", "install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	line := "image: " + committedImage + "\n"
	if n := bytes.Count(orig, []byte(line)); n != 1 {
		t.Fatalf("dist/install.yaml has %d lines %q, want exactly 1", n, strings.TrimSpace(line))
	}
	if strings.HasSuffix(managerImage, ":latest") {
		t.Fatalf("the local image %s must not be tagged latest (its default pull policy would be Always)", managerImage)
	}
	return bytes.Replace(orig, []byte(line), []byte("image: "+managerImage+"\n"), 1)
}

func testInstaller(t *testing.T) {
	manifest := renderInstaller(t)
	logf(t, "kubectl apply --server-side -f dist/install.yaml (image %s)", managerImage)
	mustKubectl(t, manifest, "apply", "--server-side", "-f", "-")
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			kubectl(t, manifest, "delete", "--ignore-not-found", "--wait=true", "-f", "-")
		}
	})
	o := operator{namespace: "databricks-token-operator-system", deployment: "databricks-token-operator-controller-manager"}
	checkOperatorRuns(t, o)

	t.Run("a credential becomes Ready", func(t *testing.T) {
		ns := newNamespace(t, "installer-check")
		id, secret := "inst-"+shortRand(), "inse"+shortRand()+shortRand()
		fakes.idp.AddDatabricksClient(id, secret)
		mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sp"},
			Data: map[string][]byte{"client-id": []byte(id), "client-secret": []byte(secret)}})
		mustCreate(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "test-ca"}, Data: map[string]string{"ca.crt": string(fakes.caPEM)}})
		mustCreate(t, &v1alpha1.DatabricksCredential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dbt"},
			Spec: v1alpha1.DatabricksCredentialSpec{Host: workspaceURL, CABundleRef: &v1alpha1.CABundleReference{Name: "test-ca"},
				Databricks: &v1alpha1.DatabricksIdentity{ClientSecretRef: v1alpha1.ClientSecretReference{Name: "sp"}}}})
		waitReady(t, ns, "dbt", 90*time.Second)
	})

	t.Run("uninstall leaves nothing behind", func(t *testing.T) {
		logf(t, "kubectl delete -f dist/install.yaml")
		mustKubectl(t, manifest, "delete", "--wait=true", "--timeout=3m", "-f", "-")
		uninstalled = true
		// Deleting the CRD deletes every credential; the garbage collector then deletes the
		// Secrets they owned (in namespaces the installer never created).
		expectNothingLeft(t, 2*time.Minute, nothingLeft)
	})
}

func testHelm(t *testing.T) {
	const release, ns = "dbtoken", "dbtoken-system"
	// Helm's --create-namespace makes a namespace without Pod Security labels; an administrator
	// who wants the restricted level enforced creates it first, as here.
	mustCreate(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}}})
	repo, tag, _ := strings.Cut(managerImage, ":")
	logf(t, "helm install %s dist/chart -n %s (image %s, pullPolicy Never)", release, ns, managerImage)
	if r := helm(t, "install", release, "dist/chart", "-n", ns,
		"--set", "image.repository="+repo, "--set", "image.tag="+tag, "--set", "image.pullPolicy=Never"); r.err != nil {
		t.Fatalf("helm install: %s", r)
	}
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			helm(t, "uninstall", release, "-n", ns, "--wait")
			kubectl(t, nil, "delete", "--ignore-not-found", "-f", "dist/chart/crds/")
		}
		kubectl(t, nil, "delete", "namespace", "--ignore-not-found", ns, "cluster-test")
	})
	deps, err := cs.AppsV1().Deployments(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
	if err != nil || len(deps.Items) != 1 {
		t.Fatalf("want one Deployment of release %s: %v %v", release, err, deps)
	}
	o := operator{namespace: ns, deployment: deps.Items[0].Name}
	checkOperatorRuns(t, o)

	const testNS = "cluster-test"
	mustCreate(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted"}}})
	var names []string
	if !t.Run("every identity block becomes Ready", func(t *testing.T) {
		issuer, _ := serviceAccountIssuer(t)
		names = credentialSet(t, testNS)
		for _, n := range names {
			waitReady(t, testNS, n, 90*time.Second)
		}
		// The secretless ones presented ServiceAccount tokens this cluster's API server signed,
		// and the identity provider verified them against the cluster's published keys.
		var fed, wi bool
		for _, r := range fakes.idp.Requests() {
			if r.AssertionVerified && r.AssertionIssuer == issuer {
				switch r.AssertionType {
				case "subject_token":
					fed = fed || slices.Contains(r.AssertionAudience, federationAudience)
				case "client_assertion":
					wi = wi || slices.Contains(r.AssertionAudience, "api://AzureADTokenExchange")
				}
			}
		}
		if !fed || !wi {
			t.Errorf("verified ServiceAccount tokens of issuer %s: federation %t, workload identity %t; want both", issuer, fed, wi)
		}
	}) {
		t.FailNow()
	}

	mon := startMonitor(testNS)
	monitorStopped := false
	finishMonitor := func(t *testing.T) {
		if monitorStopped {
			return
		}
		monitorStopped = true
		violations := mon.finish()
		logf(t, "token monitor: %s", mon.summary())
		for _, v := range violations {
			t.Errorf("a Secret held an expired token: %s", v)
		}
	}
	defer finishMonitor(t)

	// The long-running pod runs while the checks below go on, so that its rotations also cross
	// a leader's deletion and a rollout; it is checked once they are done.
	var lr *longRun
	t.Run("a long-running pod with the token-server sidecar starts", func(t *testing.T) {
		lr = startLongRun(t, testNS)
	})

	t.Run("a CronJob's pods read the token and reach the workspace", func(t *testing.T) {
		testConsumer(t, testNS, "databricks", mon)
	})
	t.Run("metrics need the metrics-reader role", func(t *testing.T) {
		testMetrics(t, o, release, testNS)
	})
	t.Run("refreshes go on when the leader pod is deleted", func(t *testing.T) {
		pods := o.waitRolledOut(t, 2*time.Minute)
		leader := waitLeader(t, o, pods, time.Minute)
		t0 := time.Now()
		logf(t, "deleting the leader %s", leader)
		if err := cs.CoreV1().Pods(o.namespace).Delete(context.Background(), leader, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		pods = o.waitRolledOut(t, 2*time.Minute)
		if slices.ContainsFunc(pods, func(p corev1.Pod) bool { return p.Name == leader }) {
			t.Fatalf("the deleted leader %s is still among the pods", leader)
		}
		figures, _ := readiness(t, pods)
		logf(t, "new leader: %s; container start → Ready: %s", waitLeader(t, o, pods, time.Minute), figures)
		waitAllRefreshed(t, mon, testNS, names, t0)
	})
	t.Run("refreshes go on through kubectl rollout restart", func(t *testing.T) {
		before := o.waitRolledOut(t, 2*time.Minute)
		t0 := time.Now()
		logf(t, "kubectl rollout restart deployment/%s", o.deployment)
		mustKubectl(t, nil, "-n", o.namespace, "rollout", "restart", "deployment/"+o.deployment)
		mustKubectl(t, nil, "-n", o.namespace, "rollout", "status", "deployment/"+o.deployment, "--timeout=3m")
		took := time.Since(t0)
		after := o.waitRolledOut(t, 2*time.Minute)
		for _, p := range after {
			if slices.ContainsFunc(before, func(q corev1.Pod) bool { return q.Name == p.Name }) {
				t.Fatalf("pod %s survived the restart", p.Name)
			}
		}
		// A new replica is Ready in seconds (issue 15.1): it starts its informers with the
		// manager, leader or not, so the kubelet's first readiness probe passes. When the
		// caches were started from inside the probe, a replica took 40–50 s and this
		// 2-replica rollout 103 s.
		figures, longest := readiness(t, after)
		logf(t, "rollout of %d replicas complete after %s; container start → Ready: %s", len(after), took.Round(100*time.Millisecond), figures)
		if longest > replicaReadyBound {
			t.Errorf("a new replica took %s from start to Ready, more than %s: is /readyz waiting for caches that start late?", longest, replicaReadyBound)
		}
		if took > rolloutBound {
			t.Errorf("the rollout restart took %s, more than %s", took.Round(time.Second), rolloutBound)
		}
		logf(t, "leader after the restart: %s", waitLeader(t, o, after, time.Minute))
		waitAllRefreshed(t, mon, testNS, names, t0)
	})
	t.Run("a long-running Go SDK client works across three rotations delivered by the kubelet", func(t *testing.T) {
		if lr == nil {
			t.Fatal("the long-running pod did not start")
		}
		lr.finish(t, mon)
	})
	t.Run("no Secret ever held an expired token", finishMonitor)

	t.Run("deleting a credential removes its Secret through the garbage collector", func(t *testing.T) {
		// With the operator scaled to zero, nothing but the API server's garbage collector (in
		// the controller manager) can remove the Secret: it follows the ownerReference.
		mustKubectl(t, nil, "-n", o.namespace, "scale", "deployment/"+o.deployment, "--replicas=0")
		eventually(t, time.Minute, "the operator's pods to be gone", func() (bool, string) {
			pods := o.pods(t)
			return len(pods) == 0, describePods(pods)
		})
		sec := secret(t, testNS, "oauth2")
		if sec == nil || !slices.ContainsFunc(sec.OwnerReferences, func(r metav1.OwnerReference) bool {
			return r.Kind == "DatabricksCredential" && r.Name == "oauth2" && ptr.Deref(r.Controller, false)
		}) {
			t.Fatalf("Secret oauth2 is missing or not controlled by its credential: %+v", sec)
		}
		if err := k8s.Delete(context.Background(), &v1alpha1.DatabricksCredential{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "oauth2"}}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, time.Minute, "Secret oauth2", func() error {
			_, err := cs.CoreV1().Secrets(testNS).Get(context.Background(), "oauth2", metav1.GetOptions{})
			return err
		})
	})

	t.Run("helm uninstall leaves only the CRDs, the credentials and the Lease", func(t *testing.T) {
		logf(t, "helm uninstall %s", release)
		if r := helm(t, "uninstall", release, "-n", ns, "--wait", "--timeout=3m"); r.err != nil {
			t.Fatalf("helm uninstall: %s", r)
		}
		uninstalled = true
		// What Helm leaves by design: the CRDs (Helm never deletes them, as values.yaml and the
		// README say) and so the users' credentials and their token Secrets; and the leader
		// Lease, which the manager created at run time and so is not part of the release. The
		// manager releases it when it stops (no holder); the namespace's owner deletes it.
		expectNothingLeft(t, 2*time.Minute, leftByHelm)
		var l coordinationv1.Lease
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: leaseName}, &l); err != nil {
			t.Fatalf("the Lease: %v", err)
		}
		if h := ptr.Deref(l.Spec.HolderIdentity, ""); h != "" {
			t.Errorf("the Lease is still held by %q after uninstall; a stopping manager releases it", h)
		}
		if err := k8s.Delete(context.Background(), &l); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("deleting the CRDs Helm keeps removes the credentials and their Secrets", func(t *testing.T) {
		mustKubectl(t, nil, "delete", "--wait=true", "-f", "dist/chart/crds/")
		// Deleting a CRD deletes its objects; the garbage collector then deletes the Secrets
		// they owned.
		expectNothingLeft(t, 2*time.Minute, nothingLeft)
	})
}

// How fast a rollout must be. The manifests probe readiness every 10 s, the first time at least
// 5 s after the container started: the first probe comes 5–15 s after start, depending on where
// the kubelet's probe ticker stands. replicaReadyBound allows one failed probe on a busy machine
// (25 s). A 2-replica rollout (maxSurge 1, maxUnavailable 0: one replica after the other) takes
// about 25 s here, its replicas Ready 10–12 s after start; rolloutBound is generous. The manager
// as it was before issue 15.1 (commit c59469c, caches started from inside the probe) fails both
// here: Ready after 39 and 43 s (4 failed probes each), rollout 84 s.
const (
	replicaReadyBound = 30 * time.Second
	rolloutBound      = time.Minute
)

// What expectNothingLeft tolerates.
type leftover int

const (
	nothingLeft leftover = iota
	// leftByHelm: the CRDs (which must still be there), the token Secrets of the credentials
	// they hold, and the leader Lease.
	leftByHelm
)

// waitAllRefreshed waits until every credential's Secret got a new token after t0.
func waitAllRefreshed(t *testing.T, mon *secretMonitor, ns string, names []string, t0 time.Time) {
	t.Helper()
	eventually(t, 3*time.Minute, "every Secret to get a new token", func() (bool, string) {
		var stale []string
		for _, n := range names {
			if !mon.replacedSince(n, t0) {
				stale = append(stale, n)
			}
		}
		return len(stale) == 0, fmt.Sprintf("not refreshed since %s: %v", t0.Format("15:04:05"), stale)
	})
	logf(t, "every Secret refreshed since %s", t0.Format("15:04:05"))
}

var consumerLine = regexp.MustCompile(`env-token=([0-9a-f]+) file-token=([0-9a-f]+)`)

// testConsumer runs the consumer image the way a dbt CronJob would, and checks what its pods got.
func testConsumer(t *testing.T, ns, secretName string, mon *secretMonitor) {
	cj := consumerCronJob(ns, secretName)
	mustCreate(t, cj)
	logf(t, "CronJob %s created (every minute); waiting for its first scheduled run", cj.Name)
	var first string
	eventually(t, 150*time.Second, "a scheduled Job of the CronJob", func() (bool, string) {
		jobs, err := cs.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, j := range jobs.Items {
			if slices.ContainsFunc(j.OwnerReferences, func(r metav1.OwnerReference) bool { return r.Kind == "CronJob" && r.Name == cj.Name }) {
				first = j.Name
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d jobs, none scheduled yet", len(jobs.Items))
	})
	// The CronJob is suspended now, so that only the Job created below runs from here on.
	mustKubectl(t, nil, "-n", ns, "patch", "cronjob", cj.Name, "--type=merge", "-p", `{"spec":{"suspend":true}}`)
	envFP, fileFP := consumerResult(t, ns, first)
	if envFP != fileFP {
		t.Errorf("job %s: the environment and the mounted file hold different tokens (%s, %s); a fresh pod should get one", first, envFP, fileFP)
	}
	if _, ok := mon.seen(secretName, envFP); !ok {
		t.Errorf("job %s used token %s, which the Secret never held", first, envFP)
	}

	// A pod started after a refresh gets the new token.
	var refreshed observation
	eventually(t, 3*time.Minute, "the Secret to be refreshed after job "+first, func() (bool, string) {
		cur, ok := mon.current(secretName)
		if ok && cur.fp != envFP {
			refreshed = cur
			return true, ""
		}
		return false, "still " + envFP
	})
	logf(t, "Secret %s refreshed: %s → %s", secretName, envFP, refreshed.fp)
	second := "consumer-after-refresh"
	mustKubectl(t, nil, "-n", ns, "create", "job", second, "--from=cronjob/"+cj.Name)
	envFP2, fileFP2 := consumerResult(t, ns, second)
	for what, fp := range map[string]string{"environment": envFP2, "mounted file": fileFP2} {
		at, ok := mon.seen(secretName, fp)
		if fp == envFP || !ok || at.Before(refreshed.at) {
			t.Errorf("job %s (started after the refresh) got %s token %s; want the refreshed token %s or a later one", second, what, fp, refreshed.fp)
		}
	}
}

// consumerResult waits for the Job's pod to finish and returns the fingerprints it printed.
func consumerResult(t *testing.T, ns, job string) (envFP, fileFP string) {
	t.Helper()
	var pod corev1.Pod
	eventually(t, 2*time.Minute, "job "+job+"'s pod to finish", func() (bool, string) {
		pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=" + job})
		if err != nil || len(pods.Items) == 0 {
			return false, fmt.Sprintf("no pod yet (%v)", err)
		}
		pod = pods.Items[0]
		return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed, describePods(pods.Items)
	})
	logs, err := cs.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(context.Background())
	if err != nil {
		t.Fatalf("logs of %s: %v", pod.Name, err)
	}
	out := string(logs)
	if pod.Status.Phase != corev1.PodSucceeded || !strings.Contains(out, "connection ok") {
		t.Fatalf("job %s: pod %s %s, output:\n%s", job, pod.Name, pod.Status.Phase, out)
	}
	m := consumerLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("job %s: no token fingerprints in the output:\n%s", job, out)
	}
	logf(t, "job %s: connection ok (environment token %s, mounted token %s)", job, m[1], m[2])
	return m[1], m[2]
}

// consumerCronJob is a dbt-like CronJob: envFrom the token Secret (DATABRICKS_HOST,
// DATABRICKS_TOKEN), the token key also mounted as a file, the workspace's CA as SSL_CERT_FILE.
// It passes the restricted Pod Security level.
func consumerCronJob(ns, secretName string) *batchv1.CronJob {
	pod := corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		AutomountServiceAccountToken:  ptr.To(false),
		TerminationGracePeriodSeconds: ptr.To[int64](5),
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		Containers: []corev1.Container{{
			Name: "consumer", Image: consumerImage, ImagePullPolicy: corev1.PullNever,
			EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secretName}}}},
			Env: []corev1.EnvVar{
				{Name: "TOKEN_FILE", Value: "/var/run/databricks/" + v1alpha1.DefaultTokenKey},
				{Name: "SSL_CERT_FILE", Value: "/etc/workspace-ca/ca.crt"},
			},
			VolumeMounts: []corev1.VolumeMount{
				{Name: "token", MountPath: "/var/run/databricks", ReadOnly: true},
				{Name: "ca", MountPath: "/etc/workspace-ca", ReadOnly: true},
			},
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
				RunAsUser: ptr.To[int64](65532), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}},
		Volumes: []corev1.Volume{
			{Name: "token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secretName,
				Items: []corev1.KeyToPath{{Key: v1alpha1.DefaultTokenKey, Path: v1alpha1.DefaultTokenKey}}}}},
			{Name: "ca", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "test-ca"}}}},
		},
	}
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "consumer"},
		Spec: batchv1.CronJobSpec{
			Schedule:          "* * * * *",
			ConcurrencyPolicy: batchv1.ForbidConcurrent,
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				BackoffLimit: ptr.To[int32](0),
				Template:     corev1.PodTemplateSpec{Spec: pod},
			}},
		},
	}
}

// testMetrics calls the leader's metrics endpoint (HTTPS, authenticated and authorized by the
// API server) with a ServiceAccount token bound to the chart's metrics-reader ClusterRole, one
// without the binding, and none.
func testMetrics(t *testing.T, o operator, release, ns string) {
	ctx := context.Background()
	roles, err := cs.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
	if err != nil {
		t.Fatal(err)
	}
	var reader string
	for _, r := range roles.Items {
		if strings.HasSuffix(r.Name, "-metrics-reader") {
			reader = r.Name
		}
	}
	if reader == "" {
		t.Fatalf("release %s has no *-metrics-reader ClusterRole", release)
	}
	for _, sa := range []string{"scraper", "stranger"} {
		mustCreate(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}})
	}
	mustCreate(t, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-test-scraper"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: reader},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "scraper"}},
	})
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), "cluster-test-scraper", metav1.DeleteOptions{})
	})
	token := func(sa string) string {
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("token for %s: %v", sa, err)
		}
		return tr.Status.Token
	}
	pods := o.waitRolledOut(t, time.Minute)
	leader := waitLeader(t, o, pods, time.Minute)
	var ip string
	var port int32
	for _, p := range pods {
		if p.Name == leader {
			ip = p.Status.PodIP
			for _, cp := range p.Spec.Containers[0].Ports {
				if cp.Name == "metrics" || cp.Name == "https-metrics" {
					port = cp.ContainerPort
				}
			}
		}
	}
	if ip == "" || port == 0 {
		t.Fatalf("leader %s: no pod IP or metrics port", leader)
	}
	url := fmt.Sprintf("https://%s/metrics", net.JoinHostPort(ip, fmt.Sprint(port)))
	// The metrics server's certificate is self-signed (controller-runtime generates it); what is
	// tested here is authentication and authorization, not the certificate.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(bearer string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return resp.StatusCode, string(b)
	}
	// RBAC bindings take effect at once, but give the authorizer's cache a few tries.
	var code int
	var body string
	eventually(t, 30*time.Second, "metrics with the metrics-reader binding", func() (bool, string) {
		code, body = get(token("scraper"))
		return code == http.StatusOK, fmt.Sprintf("HTTP %d", code)
	})
	if !strings.Contains(body, "controller_runtime_reconcile_total") {
		t.Errorf("metrics body (%d bytes) has no controller_runtime_reconcile_total", len(body))
	}
	logf(t, "%s: HTTP %d with the metrics-reader binding (%d bytes)", url, code, len(body))
	if code, _ := get(token("stranger")); code != http.StatusForbidden {
		t.Errorf("a ServiceAccount without the binding got HTTP %d, want 403", code)
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Errorf("no token got HTTP %d, want 401", code)
	}
}

// expectNothingLeft waits until no object of the operator is left in the cluster: its
// namespaces' workloads, RBAC, CRDs, Leases and the token Secrets it wrote; with leftByHelm, what
// a Helm uninstall leaves by design is expected instead.
func expectNothingLeft(t *testing.T, timeout time.Duration, allowed leftover) {
	keepCRDs := allowed == leftByHelm
	t.Helper()
	ctx := context.Background()
	ours := func(name string) bool {
		return strings.Contains(name, "databricks-token-operator") || strings.Contains(name, "dbtoken.io")
	}
	eventually(t, timeout, "no object of the operator to be left", func() (bool, string) {
		var left []string
		add := func(kind, name string) { left = append(left, kind+" "+name) }
		if l, err := cs.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				if ours(o.Name) {
					add("ClusterRole", o.Name)
				}
			}
		}
		if l, err := cs.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				if ours(o.Name) || ours(o.RoleRef.Name) {
					add("ClusterRoleBinding", o.Name)
				}
			}
		}
		if l, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				if ours(o.Name) {
					add("Namespace", o.Name)
				}
			}
		}
		if l, err := cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				if ours(o.Name) {
					add("Deployment", o.Namespace+"/"+o.Name)
				}
			}
		}
		if l, err := cs.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				if ours(o.Name) {
					add("ServiceAccount", o.Namespace+"/"+o.Name)
				}
			}
		}
		if l, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				if ours(o.Name) {
					add("Service", o.Namespace+"/"+o.Name)
				}
			}
		}
		if l, err := cs.RbacV1().Roles("").List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				if ours(o.Name) {
					add("Role", o.Namespace+"/"+o.Name)
				}
			}
		}
		if l, err := cs.RbacV1().RoleBindings("").List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				if ours(o.Name) {
					add("RoleBinding", o.Namespace+"/"+o.Name)
				}
			}
		}
		if l, err := cs.CoordinationV1().Leases("").List(ctx, metav1.ListOptions{}); err == nil {
			for _, o := range l.Items {
				if o.Name == leaseName && !keepCRDs {
					add("Lease", o.Namespace+"/"+o.Name)
				}
			}
		}
		if l, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelCredential}); err == nil && !keepCRDs {
			for _, o := range l.Items {
				add("Secret", o.Namespace+"/"+o.Name)
			}
		}
		for _, crd := range []string{"databrickscredentials.dbtoken.io", "clusterdatabrickscredentials.dbtoken.io"} {
			_, err := cs.Discovery().RESTClient().Get().AbsPath("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + crd).DoRaw(ctx)
			switch {
			case err == nil && !keepCRDs:
				add("CustomResourceDefinition", crd)
			case apierrors.IsNotFound(err) && keepCRDs:
				add("missing CustomResourceDefinition (Helm should keep it)", crd)
			}
		}
		return len(left) == 0, strings.Join(left, ", ")
	})
}

func newNamespace(t *testing.T, name string) string {
	t.Helper()
	mustCreate(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
}

func shortRand() string { return newGUID()[:8] }
