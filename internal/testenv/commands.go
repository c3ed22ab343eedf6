package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// modulePath is this repository's Go module; ModuleRoot looks for its go.mod.
const modulePath = "github.com/dbtoken/databricks-token-operator"

// ModuleRoot returns the directory holding this module's go.mod, searched upward from the working
// directory, so that config/, hack/ and cmd/ are found whether the caller is a test package
// (run in its own directory) or a program run from anywhere in the checkout.
func ModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above %s: run from inside the databricks-token-operator repository", modulePath, wd)
		}
		dir = parent
	}
}

// Result is a finished command: what it printed and how it ended.
type Result struct {
	Stdout, Stderr string
	Err            error
}

func (r Result) String() string {
	return fmt.Sprintf("error: %v\nstdout:\n%s\nstderr:\n%s", r.Err, r.Stdout, r.Stderr)
}

// CommandTimeout bounds every command Run and Kubectl start, whatever ctx allows: a hung kubectl,
// helm or promtool must fail its test rather than stall the whole run.
const CommandTimeout = 5 * time.Minute

// Run runs name with args in dir (the module root when empty), with stdin when non-nil, until it
// exits, ctx ends or CommandTimeout passes, and captures stdout and stderr apart.
func Run(ctx context.Context, dir string, stdin []byte, name string, args ...string) Result {
	return runWithEnv(ctx, dir, nil, stdin, name, args...)
}

// runWithEnv is Run with env added to this process's environment for the command.
func runWithEnv(ctx context.Context, dir string, env []string, stdin []byte, name string, args ...string) Result {
	if dir == "" {
		root, err := ModuleRoot()
		if err != nil {
			return Result{Err: err}
		}
		dir = root
	}
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
}

// RunScript runs a script of the repository (a path relative to the module root, such as
// hack/render-default.sh) in the module root and returns its stdout. Its stderr, where the
// scripts report progress, goes to progress, so that a long first build is visible. Errors are
// the script's own; callers name the script.
func RunScript(ctx context.Context, progress io.Writer, script string, args ...string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, script), args...)
	cmd.Dir = root
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = progress
	err = cmd.Run()
	return stdout.String(), err
}

// ToolPath runs one of the repository's scripts that build or fetch a tool and print its path on
// the last line of stdout (hack/setup-envtest.sh, hack/install-helm.sh, hack/install-promtool.sh),
// and returns that path. As with RunScript, callers name the script in their errors.
func ToolPath(ctx context.Context, progress io.Writer, script string) (string, error) {
	out, err := RunScript(ctx, progress, script)
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	path := strings.TrimSpace(lines[len(lines)-1])
	if path == "" {
		return "", errors.New("printed no path")
	}
	return path, nil
}
