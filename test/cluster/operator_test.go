package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// leaseName is the manager's leader-election Lease (cmd/manager LeaderElectionID).
const leaseName = "databricks-token-operator.dbtoken.io"

// operator is an installed operator: its namespace and Deployment.
type operator struct {
	namespace  string
	deployment string
}

func (o operator) get(t *testing.T) *appsv1.Deployment {
	t.Helper()
	d, err := cs.AppsV1().Deployments(o.namespace).Get(context.Background(), o.deployment, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Deployment %s/%s: %v", o.namespace, o.deployment, err)
	}
	return d
}

// pods lists the Deployment's pods that are not being deleted.
func (o operator) pods(t *testing.T) []corev1.Pod {
	t.Helper()
	d := o.get(t)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	list, err := cs.CoreV1().Pods(o.namespace).List(context.Background(), metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// waitRolledOut waits until the Deployment's latest generation has all its replicas updated,
// Running and Ready, and no old pod is left.
func (o operator) waitRolledOut(t *testing.T, timeout time.Duration) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, timeout, "the operator's Deployment to roll out", func() (bool, string) {
		d := o.get(t)
		want := ptr.Deref(d.Spec.Replicas, 1)
		st := d.Status
		if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != want || st.ReadyReplicas != want || st.Replicas != want {
			return false, fmt.Sprintf("generation %d/%d, replicas %d updated %d ready %d (want %d); pods: %s",
				st.ObservedGeneration, d.Generation, st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, want, describePods(o.pods(t)))
		}
		pods = o.pods(t)
		if int32(len(pods)) != want {
			return false, "pods: " + describePods(pods)
		}
		// The Deployment's status lags its pods: right after a pod is deleted it may still
		// count it Ready while its replacement is Pending.
		for i := range pods {
			if pods[i].Status.Phase != corev1.PodRunning || !podReady(&pods[i]) {
				return false, "pods: " + describePods(pods)
			}
		}
		return true, ""
	})
	return pods
}

func describePods(pods []corev1.Pod) string {
	var parts []string
	for _, p := range pods {
		s := fmt.Sprintf("%s %s", p.Name, p.Status.Phase)
		for _, c := range p.Status.ContainerStatuses {
			s += fmt.Sprintf(" ready=%t restarts=%d", c.Ready, c.RestartCount)
			if w := c.State.Waiting; w != nil {
				s += fmt.Sprintf(" waiting=%s(%s)", w.Reason, w.Message)
			}
			if term := c.LastTerminationState.Terminated; term != nil {
				s += fmt.Sprintf(" lastExit=%d(%s)", term.ExitCode, term.Reason)
			}
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// checkOperatorRuns is what every install must give: two replicas Running and Ready through the
// kubelet's probes, exactly one of them holding the Lease, admitted by a namespace that enforces
// the restricted Pod Security level, and running as the kernel sees it with a read-only root
// filesystem, non-root, without capabilities or privilege escalation.
func checkOperatorRuns(t *testing.T, o operator) []corev1.Pod {
	t.Helper()
	pods := o.waitRolledOut(t, 3*time.Minute)
	if len(pods) != 2 {
		t.Fatalf("want 2 replicas, got %s", describePods(pods))
	}

	t.Run("replicas are Ready through the kubelet's probes", func(t *testing.T) {
		for _, p := range pods {
			c := p.Spec.Containers[0]
			// Readiness is not implied by Running when a readinessProbe is set: the kubelet
			// marks the container ready only once GET /readyz answered 200. Both probes must be
			// the manager's endpoints, on the probe port.
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Errorf("%s: readinessProbe %+v, want GET /readyz", p.Name, c.ReadinessProbe)
			}
			if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Errorf("%s: livenessProbe %+v, want GET /healthz", p.Name, c.LivenessProbe)
			}
			if p.Status.Phase != corev1.PodRunning || !podReady(&p) {
				t.Errorf("%s is not Running and Ready: %s", p.Name, describePods([]corev1.Pod{p}))
			}
			for _, st := range p.Status.ContainerStatuses {
				// A failing liveness probe shows as restarts.
				if st.RestartCount != 0 {
					t.Errorf("%s: container %s restarted %d times: %s", p.Name, st.Name, st.RestartCount, describePods([]corev1.Pod{p}))
				}
			}
		}
	})

	t.Run("exactly one replica holds the Lease", func(t *testing.T) {
		leader := waitLeader(t, o, pods, time.Minute)
		figures, _ := readiness(t, pods)
		logf(t, "leader: %s; container start → Ready: %s", leader, figures)
	})

	t.Run("the namespace enforces Pod Security restricted", func(t *testing.T) {
		ns, err := cs.CoreV1().Namespaces().Get(context.Background(), o.namespace, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
			t.Errorf("namespace %s enforces %q, want restricted", o.namespace, got)
		}
		// The manager pods exist, so admission let them in. That it would have kept a pod out
		// shows that it judged them: a root, privileged pod is refused in the same namespace.
		bad := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "psa-probe", Namespace: o.namespace},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "c", Image: managerImage, ImagePullPolicy: corev1.PullNever,
				SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
			}}},
		}
		_, err = cs.CoreV1().Pods(o.namespace).Create(context.Background(), bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "violates PodSecurity") {
			t.Errorf("a privileged pod in %s: got %v, want Forbidden by PodSecurity restricted", o.namespace, err)
		}
	})

	t.Run("the kernel runs the manager read-only, non-root, without privileges", func(t *testing.T) {
		for _, p := range pods {
			pid := containerPID(t, &p, "manager")
			checkProcess(t, p.Name, pid)
		}
	})
	return pods
}

// readyAfterStart is how long after its manager container started a pod became Ready, both as
// the kubelet reports them (container state and the Ready condition, to the second). With the
// probes of the manifests (readiness first after 5 s, then every 10 s) a replica whose caches are
// warm at start is Ready after about 5 s.
func readyAfterStart(p *corev1.Pod) (time.Duration, error) {
	var started, ready time.Time
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == "manager" && st.State.Running != nil {
			started = st.State.Running.StartedAt.Time
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			ready = c.LastTransitionTime.Time
		}
	}
	if started.IsZero() || ready.IsZero() {
		return 0, fmt.Errorf("%s: not running and Ready: %s", p.Name, describePods([]corev1.Pod{*p}))
	}
	return ready.Sub(started), nil
}

// readiness reports readyAfterStart for each pod, with the readiness probes that failed before
// (the kubelet's Unhealthy events), and the longest.
func readiness(t *testing.T, pods []corev1.Pod) (string, time.Duration) {
	t.Helper()
	var parts []string
	var longest time.Duration
	for i := range pods {
		d, err := readyAfterStart(&pods[i])
		if err != nil {
			t.Error(err)
			continue
		}
		longest = max(longest, d)
		failed := 0
		if evs, err := cs.CoreV1().Events(pods[i].Namespace).List(context.Background(), metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + pods[i].Name + ",reason=Unhealthy"}); err == nil {
			for _, e := range evs.Items {
				if strings.HasPrefix(e.Message, "Readiness probe failed") {
					failed += int(max(e.Count, 1))
				}
			}
		}
		parts = append(parts, fmt.Sprintf("%s %s (%d failed readiness probes)", pods[i].Name, d, failed))
	}
	return strings.Join(parts, ", "), longest
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitLeader waits until the Lease names exactly one of pods as holder, and its renewals are
// recent, and returns that pod's name. controller-runtime's identity is "<hostname>_<uuid>", and a
// pod's hostname is its name.
func waitLeader(t *testing.T, o operator, pods []corev1.Pod, timeout time.Duration) string {
	t.Helper()
	var leader string
	eventually(t, timeout, "one leader among "+podNames(pods), func() (bool, string) {
		var l coordinationv1.Lease
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: o.namespace, Name: leaseName}, &l); err != nil {
			return false, err.Error()
		}
		holder := ptr.Deref(l.Spec.HolderIdentity, "")
		var holders []string
		for _, p := range pods {
			if strings.HasPrefix(holder, p.Name+"_") {
				holders = append(holders, p.Name)
			}
		}
		if len(holders) != 1 {
			return false, fmt.Sprintf("Lease holder %q is not exactly one of %s", holder, podNames(pods))
		}
		if l.Spec.RenewTime == nil || time.Since(l.Spec.RenewTime.Time) > 20*time.Second {
			return false, fmt.Sprintf("Lease held by %s but last renewed at %v", holder, l.Spec.RenewTime)
		}
		leader = holders[0]
		return true, ""
	})
	return leader
}

func podNames(pods []corev1.Pod) string {
	var n []string
	for _, p := range pods {
		n = append(n, p.Name)
	}
	return "[" + strings.Join(n, " ") + "]"
}

// containerPID finds the host PID of a pod's container: the process whose cgroup path names the
// container ID that the kubelet reports. The test runs in the machine's PID namespace.
func containerPID(t *testing.T, p *corev1.Pod, container string) int {
	t.Helper()
	var id string
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == container {
			_, id, _ = strings.Cut(st.ContainerID, "://")
		}
	}
	if id == "" {
		t.Fatalf("%s: no container ID for %s", p.Name, container)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err == nil && strings.Contains(string(b), id) {
			pids = append(pids, pid)
		}
	}
	if len(pids) != 1 {
		t.Fatalf("%s/%s (container %.12s): want exactly one process, found %v", p.Name, container, id, pids)
	}
	return pids[0]
}

// checkProcess reads, from the kernel, how the container's process runs: its root mount, its
// user and group, its capabilities, no_new_privs and seccomp mode. These are facts about the
// running process, not the pod spec: a runtime or image that ignored the securityContext shows
// here.
func checkProcess(t *testing.T, name string, pid int) {
	t.Helper()
	mountinfo, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	rootOpts := ""
	for _, line := range strings.Split(string(mountinfo), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			rootOpts = f[5] // per-mount options, e.g. ro,relatime
		}
	}
	if !slices.Contains(strings.Split(rootOpts, ","), "ro") {
		t.Errorf("%s: the root filesystem is mounted %q, want read-only", name, rootOpts)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	for k, want := range map[string]string{
		"Uid":        "65532 65532 65532 65532", // real, effective, saved, filesystem
		"Gid":        "65532 65532 65532 65532",
		"CapEff":     "0000000000000000",
		"CapPrm":     "0000000000000000",
		"NoNewPrivs": "1", // allowPrivilegeEscalation: false
		"Seccomp":    "2", // a filter: seccompProfile RuntimeDefault
	} {
		if fields[k] != want {
			t.Errorf("%s (PID %d): %s is %q, want %q", name, pid, k, fields[k], want)
		}
	}
}

// waitGone waits until get reports NotFound.
func waitGone(t *testing.T, timeout time.Duration, what string, get func() error) {
	t.Helper()
	eventually(t, timeout, what+" to be gone", func() (bool, string) {
		err := get()
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		return false, "still there"
	})
}
