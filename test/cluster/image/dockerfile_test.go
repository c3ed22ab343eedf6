package image

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case, e.g. COPY
	args string
}

// parseDockerfile splits a Dockerfile into stages (each starting at FROM). Comments, blank lines
// and backslash continuations are handled; that is all this repository's Dockerfile uses.
func parseDockerfile(t *testing.T, file string) [][]instruction {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]instruction
	var cur string
	flush := func() {
		line := strings.TrimSpace(cur)
		cur = ""
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("%s: %s before the first FROM", file, in.cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if c, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur += c + " "
			continue
		}
		cur += trimmed
		flush()
	}
	flush()
	return stages
}

// finalStage is what the Dockerfile's last stage makes of the image.
type finalStage struct {
	from       string
	user       string
	workdir    string
	entrypoint []string
	env        []string
	expose     []string
	copies     map[string]string // destination path in the image → source (builder stage path)
	other      []string          // instructions this test does not know how to compare
}

func readFinalStage(t *testing.T, stages [][]instruction) finalStage {
	t.Helper()
	st := stages[len(stages)-1]
	fs := finalStage{workdir: "/", copies: map[string]string{}}
	for _, in := range st {
		switch in.cmd {
		case "FROM":
			fs.from = strings.Fields(in.args)[0]
		case "USER":
			fs.user = in.args
		case "WORKDIR":
			fs.workdir = path.Join(fs.workdir, in.args)
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &fs.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %s: want the exec (JSON) form: %v", in.args, err)
			}
		case "ENV":
			fs.env = append(fs.env, in.args)
		case "EXPOSE":
			fs.expose = append(fs.expose, strings.Fields(in.args)...)
		case "COPY":
			var srcs []string
			for _, f := range strings.Fields(in.args) {
				if !strings.HasPrefix(f, "--") {
					srcs = append(srcs, f)
				}
			}
			dest := srcs[len(srcs)-1]
			for _, src := range srcs[:len(srcs)-1] {
				d := dest
				if strings.HasSuffix(dest, "/") || dest == "." {
					d = path.Join(dest, path.Base(src))
				}
				if !path.IsAbs(d) {
					d = path.Join(fs.workdir, d)
				}
				fs.copies[d] = src
			}
		default:
			fs.other = append(fs.other, in.cmd+" "+in.args)
		}
	}
	return fs
}

// TestDockerfileMatchesDaemonlessManager fails when the Dockerfile's final stage and the
// daemonless manager image (Manager) disagree on the base, the user, the entrypoint, the working
// directory, the files copied in, the ports exposed or the environment; or when the builder stage
// builds another package or with other flags than BuildBinary.
func TestDockerfileMatchesDaemonlessManager(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join("..", "..", "..", "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a builder and a final stage", len(stages))
	}
	df := readFinalStage(t, stages)
	spec := Manager("dbtoken.local/manager:test")

	if df.from != DistrolessStaticNonroot {
		t.Errorf("final stage FROM %s; the daemonless image reproduces %s (distrolessFiles): update both together", df.from, DistrolessStaticNonroot)
	}
	if df.user != spec.User {
		t.Errorf("USER: Dockerfile %q, daemonless %q", df.user, spec.User)
	}
	if !slices.Equal(df.entrypoint, spec.Entrypoint) {
		t.Errorf("ENTRYPOINT: Dockerfile %q, daemonless %q", df.entrypoint, spec.Entrypoint)
	}
	if df.workdir != spec.WorkingDir {
		t.Errorf("WORKDIR: Dockerfile %q, daemonless %q", df.workdir, spec.WorkingDir)
	}
	if !slices.Equal(df.expose, spec.ExposedPorts) {
		t.Errorf("EXPOSE: Dockerfile %q, daemonless %q", df.expose, spec.ExposedPorts)
	}
	for _, e := range df.env {
		if !slices.Contains(spec.Env, e) {
			t.Errorf("ENV %s of the Dockerfile is not in the daemonless image's %q", e, spec.Env)
		}
	}
	if len(df.other) > 0 {
		t.Errorf("final stage has instructions the daemonless build does not reproduce: %q", df.other)
	}
	// Exactly the binaries are copied in, each to where the daemonless image puts it.
	binaries := append([]Binary{{Package: spec.Package, Path: spec.Binary}}, spec.Extras...)
	if len(df.copies) != len(binaries) {
		t.Errorf("final stage copies %v; the daemonless image adds exactly %v", df.copies, binaries)
	}
	var builds []string
	for _, in := range stages[0] {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			builds = append(builds, in.args)
		}
	}
	if len(builds) == 0 {
		t.Fatal("the builder stage has no RUN ... go build")
	}
	// Each binary copied in is the builder stage's `go build -o <it> <package>`, static and with
	// the same flags.
	for _, b := range binaries {
		if df.copies[b.Path] == "" {
			t.Errorf("final stage does not copy %s (from %s), which the daemonless image has", b.Path, b.Package)
			continue
		}
		src := path.Base(df.copies[b.Path])
		i := slices.IndexFunc(builds, func(build string) bool { return strings.Contains(build, "-o "+src+" "+b.Package) })
		if i < 0 {
			t.Errorf("no builder stage RUN builds %s into %s: %q", b.Package, src, builds)
			continue
		}
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`} {
			if !strings.Contains(builds[i], want) {
				t.Errorf("builder stage %q lacks %s, which BuildBinary uses", builds[i], want)
			}
		}
	}
	if !slices.Contains(BuildEnv, "CGO_ENABLED=0") || !slices.Contains(BuildFlags, "-trimpath") || !slices.Equal(BuildFlags[1:], []string{"-ldflags", "-s -w"}) {
		t.Errorf("BuildEnv %q / BuildFlags %q no longer match the Dockerfile's static build", BuildEnv, BuildFlags)
	}
}

// TestManagerImageShape builds the daemonless manager image from a stand-in binary and reads it
// back: the config says what the Dockerfile says, and the layer holds the binary (executable, at
// the entrypoint's path), the CA bundle and the nonroot user, as distroless does.
func TestManagerImageShape(t *testing.T) {
	if _, err := os.Stat(SystemCABundle); errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s is missing on this machine (Debian's ca-certificates package provides it)", SystemCABundle)
	}
	spec := Manager("dbtoken.local/manager:test")
	binaries := map[string]string{}
	for _, p := range append([]string{spec.Binary}, extraPaths(spec)...) {
		bin := filepath.Join(t.TempDir(), path.Base(p))
		if err := os.WriteFile(bin, []byte("\x7fELF stand-in"), 0o755); err != nil {
			t.Fatal(err)
		}
		binaries[p] = bin
	}
	img, err := Image(spec, binaries)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s, want linux/<arch>", cf.OS, cf.Architecture)
	}
	if cf.Config.User != "65532:65532" || !reflect.DeepEqual(cf.Config.Entrypoint, []string{"/manager"}) || cf.Config.WorkingDir != "/" {
		t.Errorf("config user %q entrypoint %q workdir %q", cf.Config.User, cf.Config.Entrypoint, cf.Config.WorkingDir)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]*tar.Header{}
	contents := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got["/"+strings.TrimSuffix(h.Name, "/")] = h
		if h.Typeflag == tar.TypeReg && h.Size < 1<<16 {
			b, _ := io.ReadAll(tr)
			contents["/"+h.Name] = b
		}
	}
	for _, p := range []string{"/manager", "/token-server"} {
		if h := got[p]; h == nil || h.Mode&0o111 == 0 || h.Uid != 0 {
			t.Errorf("%s missing, not executable or not root-owned (as COPY makes it): %+v", p, h)
		}
	}
	if h := got[SystemCABundle]; h == nil || h.Size == 0 {
		t.Errorf("%s missing or empty", SystemCABundle)
	}
	if !strings.Contains(string(contents["/etc/passwd"]), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no nonroot user 65532: %q", contents["/etc/passwd"])
	}
	if h := got["/tmp"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp missing or not world-writable with the sticky bit: %+v", h)
	}
}
