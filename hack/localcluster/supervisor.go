package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

type (
	statT = syscall.Stat_t
)

func stat(path string, st *statT) error { return syscall.Stat(path, st) }

// progressFD is the pipe on which the supervisor tells `up` how start-up goes: narration lines,
// then "READY" or "FAILED <reason>". It is closed once the cluster is up, so that the supervisor
// never writes to a pipe whose reader has gone.
const progressFD = 3

// running is a started component.
type running struct {
	component
	cmd  *exec.Cmd
	done chan struct{}
}

// supervise is the long-lived process of a cluster. `up` starts it in the cluster's network
// namespace and in a new mount namespace; it starts the components in order, waits for each to be
// healthy, and on SIGTERM stops them in reverse order, kills whatever is left in the cluster's
// cgroups (pods, containerd shims) and removes the cgroups.
func supervise(c *config) error {
	// The components must not inherit the pipe: up waits for it to close.
	syscall.CloseOnExec(progressFD)
	progress := os.NewFile(progressFD, "progress")
	say := func(format string, args ...any) {
		if progress != nil {
			fmt.Fprintf(progress, format+"\n", args...)
		}
		fmt.Printf("[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	// Orphans (containerd shims double-fork) are re-parented to the supervisor, not to the
	// machine's init: it reaps them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	var started []*running
	stopAll := func() {
		// Clients before the API server, the API server before etcd: an API server with clients
		// still connected has been seen to hang on SIGTERM for minutes.
		for i := len(started) - 1; i >= 0; i-- {
			stop(started[i], 15*time.Second)
		}
		self := os.Getpid()
		if err := killCgroups(c, self); err != nil {
			fmt.Println("supervisor:", err)
		}
		leaveCgroups(self)
		if err := removeCgroups(c); err != nil {
			fmt.Println("supervisor:", err)
		}
	}

	err := func() error {
		if err := setupMounts(c); err != nil {
			return err
		}
		if err := createCgroups(c); err != nil {
			return err
		}
		if err := joinCgroups(c, os.Getpid()); err != nil {
			return err
		}
		start := func(comp component, ready func(context.Context) error) error {
			t0 := time.Now()
			r, err := startComponent(c, comp)
			if err != nil {
				return err
			}
			started = append(started, r)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			for {
				select {
				case <-r.done:
					return fmt.Errorf("%s exited during start-up: %s", comp.name, tail(c.logs(comp.name+".log"), 15))
				case sig := <-sigs:
					return fmt.Errorf("interrupted by %s", sig)
				default:
				}
				err := ready(ctx)
				if err == nil {
					say("%s ready in %.1fs", comp.name, time.Since(t0).Seconds())
					return nil
				}
				if ctx.Err() != nil {
					return fmt.Errorf("%s not ready after 2m: %v; log: %s", comp.name, err, tail(c.logs(comp.name+".log"), 15))
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		insecure := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // local health endpoints only
		admin, err := adminClient(c)
		if err != nil {
			return err
		}
		if err := start(etcdComponent(c), httpOK(insecure, "http://127.0.0.1:2379/health")); err != nil {
			return err
		}
		if err := start(apiServerComponent(c), func(ctx context.Context) error {
			b, err := admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			if err != nil {
				return fmt.Errorf("%v %s", err, b)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := start(containerdComponent(c), func(ctx context.Context) error {
			return exec.CommandContext(ctx, "ctr", "--address", c.containerdSocket(), "version").Run()
		}); err != nil {
			return err
		}
		t0 := time.Now()
		if out, err := exec.Command("ctr", "--address", c.containerdSocket(), "-n", "k8s.io", "images", "import", c.path("images", "pause.tar")).CombinedOutput(); err != nil {
			return fmt.Errorf("importing the pause image: %v: %s", err, out)
		}
		say("pause image imported in %.1fs", time.Since(t0).Seconds())
		if err := start(controllerManagerComponent(c), httpOK(insecure, "https://127.0.0.1:10257/healthz")); err != nil {
			return err
		}
		if err := start(schedulerComponent(c), httpOK(insecure, "https://127.0.0.1:10259/healthz")); err != nil {
			return err
		}
		if err := start(kubeletComponent(c), func(ctx context.Context) error {
			n, err := admin.CoreV1().Nodes().Get(ctx, c.nodeName(), metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady {
					if cond.Status == corev1.ConditionTrue {
						return nil
					}
					return fmt.Errorf("node %s: %s", cond.Reason, cond.Message)
				}
			}
			return errors.New("node has no Ready condition yet")
		}); err != nil {
			return err
		}
		t0 = time.Now()
		if err := smokePod(admin); err != nil {
			return fmt.Errorf("the node cannot run a pod: %w", err)
		}
		say("a pod ran on the node in %.1fs", time.Since(t0).Seconds())
		return nil
	}()
	if err != nil {
		// One line on the pipe: up reads line by line.
		say("FAILED %s", strconv.Quote(err.Error()))
		progress.Close()
		stopAll()
		return err
	}
	say("READY")
	progress.Close()
	progress = nil

	// Until down: a component that dies is logged (the test that uses the cluster will notice);
	// the supervisor goes on, so that down still cleans up.
	for {
		select {
		case sig := <-sigs:
			fmt.Printf("[%s] supervisor: %s, stopping\n", time.Now().Format("15:04:05"), sig)
			stopAll()
			return nil
		case <-time.After(5 * time.Second):
			for _, r := range started {
				select {
				case <-r.done:
					fmt.Printf("[%s] supervisor: %s has exited: %s\n", time.Now().Format("15:04:05"), r.name, tail(c.logs(r.name+".log"), 5))
				default:
				}
			}
		}
	}
}

func startComponent(c *config, comp component) (*running, error) {
	logFile, err := os.OpenFile(c.logs(comp.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(comp.bin, comp.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", comp.name, err)
	}
	logFile.Close()
	r := &running{component: comp, cmd: cmd, done: make(chan struct{})}
	appendPID(c, comp.name, cmd.Process.Pid)
	go func() {
		_ = cmd.Wait()
		close(r.done)
	}()
	return r, nil
}

// appendPID records a started process, for the record (down stops the cluster through the
// supervisor and its cgroups, which also holds what the components started themselves).
func appendPID(c *config, name string, pid int) {
	f, err := os.OpenFile(c.path("pids"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %d\n", name, pid)
}

// stop sends SIGTERM and, after grace, SIGKILL.
func stop(r *running, grace time.Duration) {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(grace):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

func httpOK(hc *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %d %s", url, resp.StatusCode, b)
		}
		return nil
	}
}

func adminClient(c *config) (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig())
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(cfg)
}

// smokePod runs the pause image as a pod and waits for it to run: the node can start containers
// (runc, CNI, cgroups), not just report Ready.
func smokePod(cs *kubernetes.Clientset) error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// The default ServiceAccount, which admission requires of every pod, is created by the
	// controller manager shortly after the namespace exists.
	for {
		if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		} else if ctx.Err() != nil {
			return fmt.Errorf("no default ServiceAccount: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "local-cluster-smoke", Namespace: "default"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "pause", Image: pauseImage, ImagePullPolicy: corev1.PullNever,
				SecurityContext: &corev1.SecurityContext{RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false)},
			}},
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](0),
		},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	defer func() {
		_ = cs.CoreV1().Pods("default").Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}()
	var last string
	for {
		p, err := cs.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil {
			if p.Status.Phase == corev1.PodRunning {
				return nil
			}
			last = describePod(p)
		}
		if ctx.Err() != nil {
			evs, _ := cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod.Name})
			var msgs []string
			if evs != nil {
				for _, e := range evs.Items {
					msgs = append(msgs, e.Reason+": "+e.Message)
				}
			}
			return fmt.Errorf("pod not running after 90s: %s; events: %s", last, strings.Join(msgs, " | "))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func describePod(p *corev1.Pod) string {
	s := "phase " + string(p.Status.Phase)
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			s += fmt.Sprintf(", %s waiting: %s %s", cs.Name, w.Reason, w.Message)
		}
	}
	for _, cond := range p.Status.Conditions {
		if cond.Status != corev1.ConditionTrue && cond.Message != "" {
			s += fmt.Sprintf(", %s: %s", cond.Type, cond.Message)
		}
	}
	return s
}

// tail returns the last n lines of a file, for error messages.
func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n    " + strings.Join(lines, "\n    ")
}
