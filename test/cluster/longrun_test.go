package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// The long run (docs/long-runs.md, issue 14): a pod with the token-server as a native sidecar and
// a Databricks Go SDK client that calls the workspace every second, for as long as it takes the
// operator to rotate the token three times and the kubelet to deliver each rotation into the
// sidecar's Secret volume (the cluster's kubelet runs with syncFrequency 10s).
const (
	longRunName = "long-run"
	// longRunRenewBefore with the identity provider's 2-minute tokens: the Secret changes every
	// ~40 s, and the old token is still in the pod's volume until renewBefore minus the kubelet's
	// delay (10–12 s here) before it expires, far above the server's 30 s margin: the timing rule
	// of docs/long-runs.md holds.
	longRunRenewBefore = 75 * time.Second
	longRunRotations   = 3
	// longRunMaxDuration bounds the client's run: three rotations take about 2 minutes.
	longRunMaxDuration = 4 * time.Minute
	// longRunMinLeft is the least life a token the client sends may have: the token server's
	// --min-remaining, the life Azure Databricks requires.
	longRunMinLeft = 30 * time.Second
	sidecarListen  = "127.0.0.1:8765"
	sidecarDir     = "/var/run/secrets/dbtoken"
)

// longRun is the running pod of the check.
type longRun struct {
	ns, secret, pod string
	running         time.Time // when its client container was seen running
}

// startLongRun creates the credential (a Databricks service principal, renewBefore 75 s), waits
// for it, and starts the pod; it returns once the client runs, which the sidecar's startup probe
// allows only once a token can be served.
func startLongRun(t *testing.T, ns string) *longRun {
	t.Helper()
	id, secret := "lrsp-"+utilrand.String(8), "lrse"+utilrand.String(32)
	fakes.idp.AddDatabricksClient(id, secret)
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sp-" + longRunName},
		Data: map[string][]byte{"client-id": []byte(id), "client-secret": []byte(secret)}})
	mustCreate(t, &v1alpha1.DatabricksCredential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: longRunName},
		Spec: v1alpha1.DatabricksCredentialSpec{Host: workspaceURL, CABundleRef: &v1alpha1.CABundleReference{Name: "test-ca"},
			RenewBefore: &metav1.Duration{Duration: longRunRenewBefore},
			Databricks:  &v1alpha1.DatabricksIdentity{ClientSecretRef: v1alpha1.ClientSecretReference{Name: "sp-" + longRunName}}}})
	c := waitReady(t, ns, longRunName, 90*time.Second)
	lr := &longRun{ns: ns, secret: c.Status.SecretName, pod: "sdk-" + longRunName}
	mustCreate(t, longRunPod(ns, lr.pod, lr.secret))
	t0 := time.Now()
	eventually(t, 2*time.Minute, "the long-running pod's client to run", func() (bool, string) {
		p, err := cs.CoreV1().Pods(ns).Get(context.Background(), lr.pod, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, st := range p.Status.ContainerStatuses {
			if st.Name == "client" && (st.State.Running != nil || st.State.Terminated != nil) {
				return true, ""
			}
		}
		return false, describeLongRunPod(p)
	})
	lr.running = time.Now()
	logf(t, "pod %s: the Go SDK client runs %s after the pod was created, behind its token-server sidecar (Secret %s, renewBefore %s)",
		lr.pod, lr.running.Sub(t0).Round(time.Second), lr.secret, longRunRenewBefore)
	return lr
}

// longRunPod is the pod: the token server as a native sidecar (an init container with
// restartPolicy Always and an exec startup probe), the whole Secret mounted into it only, and
// the client configured by DATABRICKS_HOST, DATABRICKS_AUTH_TYPE and
// DATABRICKS_METADATA_SERVICE_URL, with the pod's UID as the URL's secret segment, as in
// config/samples/databricks_cli_job_token_server.yaml. It passes the restricted Pod Security level.
func longRunPod(ns, name, secretName string) *corev1.Pod {
	restricted := func() *corev1.SecurityContext {
		return &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	}
	podUID := corev1.EnvVar{Name: "POD_UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			InitContainers: []corev1.Container{{
				Name: "token-server", Image: managerImage, ImagePullPolicy: corev1.PullNever,
				RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
				Command:       []string{"/token-server"},
				Args:          []string{"--listen=" + sidecarListen, "--secret-dir=" + sidecarDir},
				Env: []corev1.EnvVar{{Name: "TOKEN_SERVER_PATH_SECRET", ValueFrom: &corev1.EnvVarSource{
					FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}}},
				StartupProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/token-server", "probe", "--listen=" + sidecarListen}}},
					PeriodSeconds: 1, FailureThreshold: 60,
				},
				SecurityContext: restricted(),
				VolumeMounts:    []corev1.VolumeMount{{Name: "databricks-token", MountPath: sidecarDir, ReadOnly: true}},
			}},
			Containers: []corev1.Container{{
				Name: "client", Image: sdkConsumerImage, ImagePullPolicy: corev1.PullNever,
				Env: []corev1.EnvVar{
					podUID,
					{Name: "DATABRICKS_HOST", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Key: v1alpha1.DefaultHostKey}}},
					{Name: "DATABRICKS_AUTH_TYPE", Value: "metadata-service"},
					{Name: "DATABRICKS_METADATA_SERVICE_URL", Value: "http://" + sidecarListen + "/token/$(POD_UID)"},
					{Name: "SSL_CERT_FILE", Value: "/etc/workspace-ca/ca.crt"},
					{Name: "CONSUMER_TOKENS", Value: fmt.Sprint(longRunRotations + 1)},
					{Name: "CONSUMER_INTERVAL", Value: "1s"},
					{Name: "CONSUMER_MAX_DURATION", Value: longRunMaxDuration.String()},
				},
				SecurityContext: restricted(),
				VolumeMounts:    []corev1.VolumeMount{{Name: "ca", MountPath: "/etc/workspace-ca", ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{
				{Name: "databricks-token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secretName}}},
				{Name: "ca", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "test-ca"}}}},
			},
		},
	}
}

// What the client printed (test/cluster/image/sdkconsumer).
type (
	clientAttempt struct {
		At     time.Time `json:"at"`
		FP     string    `json:"fp"`
		LeftMs int64     `json:"leftMs"`
		Status int       `json:"status"`
		Error  string    `json:"error"`
	}
	clientLine struct {
		Event string `json:"event"`
		// call
		Start    time.Time       `json:"start"`
		OK       bool            `json:"ok"`
		Attempts []clientAttempt `json:"attempts"`
		Error    string          `json:"error"`
		// token
		At        time.Time `json:"at"`
		FP        string    `json:"fp"`
		ExpiresOn int64     `json:"expiresOn"`
		Exp       int64     `json:"exp"`
		// done
		Calls  int    `json:"calls"`
		Failed int    `json:"failed"`
		Tokens int    `json:"tokens"`
		Reason string `json:"reason"`
	}
	// sidecarLine is a line of the token server's JSON log.
	sidecarLine struct {
		Time          time.Time `json:"time"`
		Msg           string    `json:"msg"`
		SecretVersion string    `json:"secretVersion"`
		Remaining     string    `json:"remaining"`
		Error         string    `json:"error"`
		Description   string    `json:"description"`
	}
)

// finish waits for the client to end and checks its run: every call succeeded, with a token the
// workspace accepted and that had at least longRunMinLeft left when sent; the client used at least
// four tokens, each one the Secret held, handed to it by the sidecar, which served as many
// versions of the volume as the kubelet wrote; and the expiry the sidecar reported is the token's.
func (lr *longRun) finish(t *testing.T, mon *secretMonitor) {
	t.Helper()
	ctx := context.Background()
	// The client ends by itself after longRunMaxDuration at the latest; what it printed by then
	// is checked whatever happened.
	var pod *corev1.Pod
	ended := false
	for deadline := lr.running.Add(longRunMaxDuration + time.Minute); !ended && time.Now().Before(deadline); {
		p, err := cs.CoreV1().Pods(lr.ns).Get(ctx, lr.pod, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod %s: %v", lr.pod, err)
		}
		pod = p
		for _, st := range p.Status.ContainerStatuses {
			ended = ended || st.Name == "client" && st.State.Terminated != nil
		}
		if !ended {
			time.Sleep(time.Second)
		}
	}
	if !ended {
		t.Errorf("the client has not ended %s after it started: %s", longRunMaxDuration+time.Minute, describeLongRunPod(pod))
	}
	logs := func(container string) string {
		b, err := cs.CoreV1().Pods(lr.ns).GetLogs(lr.pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
		if err != nil {
			t.Fatalf("logs of %s/%s: %v", lr.pod, container, err)
		}
		return string(b)
	}
	clientLog, sidecarLog := logs("client"), logs("token-server")

	var calls, tokens []clientLine
	var done *clientLine
	var other []string
	sc := bufio.NewScanner(strings.NewReader(clientLog))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l clientLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Event == "" {
			other = append(other, sc.Text())
			continue
		}
		switch l.Event {
		case "call":
			calls = append(calls, l)
		case "token":
			tokens = append(tokens, l)
		case "done":
			done = &l
		}
	}
	if len(calls) == 0 {
		t.Fatalf("the client made no call (%s); its other output:\n%s", describeLongRunPod(pod), strings.Join(first(other, 20), "\n"))
	}
	if done == nil {
		t.Errorf("the client printed no summary (%s); its other output:\n%s", describeLongRunPod(pod), strings.Join(first(other, 20), "\n"))
		done = &clientLine{}
	}

	// Every call succeeded, every attempt with a token that had enough life left, and the
	// workspace never refused one of the client's tokens.
	used := map[string]time.Time{} // fingerprint → first sent
	var order, problems []string
	worst, failed, short := time.Duration(1<<62), 0, 0
	attemptsPerToken := map[string]int{}
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for _, c := range calls {
		at := c.Start.Format("15:04:05.000")
		if !c.OK || len(c.Attempts) == 0 {
			failed++
			problem("call at %s failed: %s", at, c.Error)
		}
		for _, a := range c.Attempts {
			if a.Status != 200 {
				problem("call at %s: an attempt with token %s got HTTP %d %s", at, a.FP, a.Status, a.Error)
			}
			if a.FP == "" {
				continue
			}
			if _, ok := used[a.FP]; !ok {
				used[a.FP] = a.At
				order = append(order, a.FP)
			}
			attemptsPerToken[a.FP]++
			if a.LeftMs < 0 {
				problem("call at %s sent token %s, whose expiry the client could not read", at, a.FP)
				continue
			}
			left := time.Duration(a.LeftMs) * time.Millisecond
			worst = min(worst, left)
			if left < longRunMinLeft {
				short++
				problem("call at %s sent token %s with %s left", at, a.FP, left.Round(100*time.Millisecond))
			}
		}
	}
	if failed > 0 || short > 0 || len(problems) > 0 {
		t.Errorf("of %d calls, %d failed and %d sent a token with less than %s left; the first problems: %s",
			len(calls), failed, short, longRunMinLeft, strings.Join(first(problems, 8), "; "))
	}
	for _, fp := range order {
		chk := fakes.validations.checks(fp)
		if chk.refused > 0 {
			t.Errorf("the workspace refused token %s %d times (last: %s)", fp, chk.refused, chk.lastRefusal)
		}
		if chk.accepted < attemptsPerToken[fp] {
			t.Errorf("the workspace accepted token %s %d times, but the client sent it %d times", fp, chk.accepted, attemptsPerToken[fp])
		}
	}

	// Three rotations reached the client, each a token the Secret held, through the sidecar.
	if len(order) < longRunRotations+1 {
		t.Errorf("the client used %d tokens %v during its %d calls; want %d (three rotations)", len(order), order, len(calls), longRunRotations+1)
	}
	var delays []time.Duration
	handed := map[string]clientLine{}
	for _, tk := range tokens {
		handed[tk.FP] = tk
		// The expiry the sidecar reports is the token's own (the operator's
		// DATABRICKS_TOKEN_EXPIRES_AT may be a second or two before the JWT's exp, never after).
		if tk.Exp == 0 || tk.ExpiresOn > tk.Exp || tk.ExpiresOn < tk.Exp-5 {
			t.Errorf("the sidecar reported expires_on %d for token %s, whose exp is %d", tk.ExpiresOn, tk.FP, tk.Exp)
		}
		inSecret, ok := mon.seen(lr.secret, tk.FP)
		if !ok {
			t.Errorf("the sidecar handed the client token %s, which Secret %s never held", tk.FP, lr.secret)
			continue
		}
		if inSecret.After(lr.running) { // a rotation, not the token the pod started with
			delays = append(delays, tk.At.Sub(inSecret))
		}
	}
	for _, fp := range order {
		if _, ok := handed[fp]; !ok {
			t.Errorf("the client sent token %s, which the sidecar never handed it", fp)
		}
	}

	// The sidecar: one "serving token" line per version of the volume the kubelet wrote, no
	// refusal, no restart.
	versions := map[string]bool{}
	var refusals []string
	for _, line := range strings.Split(sidecarLog, "\n") {
		var l sidecarLine
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		switch l.Msg {
		case "serving token":
			versions[l.SecretVersion] = true
		case "refused":
			refusals = append(refusals, fmt.Sprintf("%s %s: %s", l.Time.Format("15:04:05"), l.Error, l.Description))
		}
	}
	if len(versions) < longRunRotations+1 {
		t.Errorf("the sidecar served %d versions of the Secret volume; want %d (the kubelet delivering three rotations)", len(versions), longRunRotations+1)
	}
	if len(refusals) > 0 {
		t.Errorf("the sidecar refused requests: %s", strings.Join(refusals, "; "))
	}
	for _, st := range pod.Status.InitContainerStatuses {
		if st.RestartCount > 0 {
			t.Errorf("the %s sidecar restarted %d times", st.Name, st.RestartCount)
		}
	}
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == "client" && st.State.Terminated != nil && st.State.Terminated.ExitCode != 0 {
			t.Errorf("the client exited with %d (%s)", st.State.Terminated.ExitCode, done.Reason)
		}
	}

	slices.Sort(delays)
	delay := "none"
	if len(delays) > 0 {
		delay = fmt.Sprintf("%s–%s", delays[0].Round(100*time.Millisecond), delays[len(delays)-1].Round(100*time.Millisecond))
	}
	worstLeft := "unknown"
	if worst < 1<<62 {
		worstLeft = worst.Round(100 * time.Millisecond).String()
	}
	last := calls[len(calls)-1].Start
	logf(t, "long run: %s of Go SDK calls (%d, %d failed), %d tokens used (%d rotations), sidecar served %d volume versions; "+
		"worst token life left seen by the client %s; a new token reached the client %s after the Secret changed",
		last.Sub(calls[0].Start).Round(time.Second), len(calls), done.Failed, len(order), len(order)-1, len(versions),
		worstLeft, delay)
}

func describeLongRunPod(p *corev1.Pod) string {
	if p == nil {
		return "no pod"
	}
	s := string(p.Status.Phase)
	for _, st := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		s += fmt.Sprintf("; %s ready=%t restarts=%d", st.Name, st.Ready, st.RestartCount)
		if w := st.State.Waiting; w != nil {
			s += fmt.Sprintf(" waiting=%s(%s)", w.Reason, w.Message)
		}
		if term := st.State.Terminated; term != nil {
			s += fmt.Sprintf(" exited=%d(%s)", term.ExitCode, term.Reason)
		}
	}
	return s
}

func first(list []string, n int) []string {
	if len(list) > n {
		return list[:n]
	}
	return list
}
