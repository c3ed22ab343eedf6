// Package image builds container images without a daemon: a static Go binary plus a few files in
// one layer, written as a docker-archive tarball that `ctr images import` (and `docker load`)
// reads. The local cluster (hack/local-cluster.sh) and `make test-cluster` use it, because the
// project's machines have no container engine and reach no registry.
//
// The manager image reproduces the runtime shape of the Dockerfile's final stage (the static
// binary at /manager, user 65532:65532, the CA bundle, WORKDIR /, ENTRYPOINT ["/manager"]);
// dockerfile_test.go fails when the two drift apart. `make docker-build` stays the way users
// build the image.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one file or directory of an image's layer.
type File struct {
	Path string // absolute path in the image, e.g. /etc/passwd
	Mode int64  // permission bits; a directory when Dir is set
	UID  int
	GID  int
	Dir  bool
	// Data is the content; HostPath, when set, is read instead (at build time).
	Data     []byte
	HostPath string
}

// Spec describes one image: which Go package becomes its binary, where, and how it runs.
type Spec struct {
	Ref          string   // image reference it is tagged with, e.g. dbtoken.local/manager:dev
	Package      string   // Go package built into the binary, relative to the module root
	Binary       string   // absolute path of the binary in the image
	User         string   // "uid:gid"
	Entrypoint   []string // exec form
	WorkingDir   string
	Env          []string
	ExposedPorts []string // e.g. "8443/tcp"; the Dockerfile exposes none
	Files        []File   // everything besides the binaries
	// Extras are further binaries in the image, e.g. the manager image's token-server sidecar.
	Extras []Binary
}

// Binary is a Go package built into the image at Path.
type Binary struct {
	Package string
	Path    string
}

// Build flags shared with the Dockerfile's builder stage: a static binary without paths or symbols
// of the build machine. dockerfile_test.go checks that the Dockerfile uses the same.
var (
	BuildEnv   = []string{"CGO_ENABLED=0", "GOOS=linux"}
	BuildFlags = []string{"-trimpath", "-ldflags", "-s -w"}
)

// SystemCABundle is where Debian's ca-certificates package (and distroless) keep the CA bundle.
const SystemCABundle = "/etc/ssl/certs/ca-certificates.crt"

// DistrolessStaticNonroot is the Dockerfile's base image. Its files that a Go binary can notice
// are reproduced by distrolessFiles; dockerfile_test.go fails if the Dockerfile moves to another
// base, because then this list would no longer describe it.
const DistrolessStaticNonroot = "gcr.io/distroless/static:nonroot"

// distrolessEnv is the environment gcr.io/distroless/static sets in its image config.
var distrolessEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"SSL_CERT_FILE=" + SystemCABundle,
}

// distrolessFiles are the parts of gcr.io/distroless/static:nonroot that a static Go program can
// observe: the user database (uid/gid 65532 "nonroot"), the CA bundle Go's crypto/x509 reads,
// a world-writable /tmp and the nonroot home. (Time zone data and licences are left out: the
// manager embeds no time zone lookups and reads no licence files.)
func distrolessFiles() []File {
	return []File{
		{Path: "/etc", Dir: true, Mode: 0o755},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		{Path: "/etc/ssl", Dir: true, Mode: 0o755},
		{Path: "/etc/ssl/certs", Dir: true, Mode: 0o755},
		{Path: SystemCABundle, Mode: 0o644, HostPath: SystemCABundle},
		{Path: "/home", Dir: true, Mode: 0o755},
		{Path: "/home/nonroot", Dir: true, Mode: 0o700, UID: 65532, GID: 65532},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
	}
}

// Manager is the operator's image, shaped like the Dockerfile's final stage.
func Manager(ref string) Spec {
	return Spec{
		Ref:        ref,
		Package:    "./cmd/manager",
		Binary:     "/manager",
		User:       "65532:65532",
		Entrypoint: []string{"/manager"},
		WorkingDir: "/",
		Env:        distrolessEnv,
		Files:      distrolessFiles(),
		// The token-server sidecar ships in the same image (docs/long-runs.md).
		Extras: []Binary{{Package: "./cmd/token-server", Path: "/token-server"}},
	}
}

// Pause is the pod sandbox image (what registry.k8s.io/pause is on other clusters): it sleeps
// until SIGTERM and reaps orphaned children. Like upstream's, it runs as 65535.
func Pause(ref string) Spec {
	return Spec{
		Ref:        ref,
		Package:    "./test/cluster/image/pause",
		Binary:     "/pause",
		User:       "65535:65535",
		Entrypoint: []string{"/pause"},
		WorkingDir: "/",
	}
}

// Consumer is the job image of the cluster test: it reads the token Secret as a dbt or Databricks
// CLI pod does (environment and mounted file) and calls the workspace with it.
func Consumer(ref string) Spec {
	return Spec{
		Ref:        ref,
		Package:    "./test/cluster/image/consumer",
		Binary:     "/consumer",
		User:       "65532:65532",
		Entrypoint: []string{"/consumer"},
		WorkingDir: "/",
		Env:        []string{"PATH=/"},
		Files: []File{
			{Path: "/etc", Dir: true, Mode: 0o755},
			{Path: "/etc/passwd", Mode: 0o644, Data: []byte("nonroot:x:65532:65532:nonroot:/:/sbin/nologin\n")},
			{Path: "/tmp", Dir: true, Mode: 0o1777},
		},
	}
}

// SDKConsumer is the long-running pod of the cluster test: a Databricks Go SDK client that takes
// its tokens from the token-server sidecar (metadata-service authentication) and calls the
// workspace in a loop across rotations.
func SDKConsumer(ref string) Spec {
	s := Consumer(ref)
	s.Package, s.Binary, s.Entrypoint = "./test/cluster/image/sdkconsumer", "/sdkconsumer", []string{"/sdkconsumer"}
	return s
}

// BuildBinary compiles pkg from the module at moduleRoot into out, statically, with the
// Dockerfile's flags, for linux on this machine's architecture.
func BuildBinary(ctx context.Context, moduleRoot, pkg, out string) error {
	args := append([]string{"build"}, BuildFlags...)
	args = append(args, "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), BuildEnv...)
	cmd.Env = append(cmd.Env, "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// epoch is the modification time of every file in the layer, so that the same inputs give the
// same layer digest.
var epoch = time.Unix(0, 0).UTC()

// Image assembles the image from spec and the already built binaries (binaries maps a path in the
// image, spec.Binary and each extra's, to the built file): one layer on an empty base, with the
// config (user, entrypoint, working directory, environment, ports) the Dockerfile gives.
func Image(spec Spec, binaries map[string]string) (v1.Image, error) {
	files := append([]File(nil), spec.Files...)
	for _, p := range append([]string{spec.Binary}, extraPaths(spec)...) {
		if binaries[p] == "" {
			return nil, fmt.Errorf("no built binary for %s", p)
		}
		files = append(files, File{Path: p, Mode: 0o755, HostPath: binaries[p]})
	}
	layerTar, err := layer(files)
	if err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Created = v1.Time{Time: epoch}
	cf.Config.User = spec.User
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.WorkingDir = spec.WorkingDir
	cf.Config.Env = spec.Env
	if len(spec.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range spec.ExposedPorts {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	return mutate.ConfigFile(img, cf)
}

// Write builds spec's binary and writes its image to tarPath as a docker archive tagged spec.Ref.
func Write(ctx context.Context, moduleRoot string, spec Spec, tarPath string) error {
	tmp, err := os.MkdirTemp("", "image-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	binaries := map[string]string{}
	for _, b := range append([]Binary{{Package: spec.Package, Path: spec.Binary}}, spec.Extras...) {
		out := path.Join(tmp, path.Base(b.Path))
		if err := BuildBinary(ctx, moduleRoot, b.Package, out); err != nil {
			return err
		}
		binaries[b.Path] = out
	}
	img, err := Image(spec, binaries)
	if err != nil {
		return err
	}
	ref, err := name.NewTag(spec.Ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", spec.Ref, err)
	}
	return tarball.WriteToFile(tarPath, ref, img)
}

func extraPaths(spec Spec) []string {
	var out []string
	for _, b := range spec.Extras {
		out = append(out, b.Path)
	}
	return out
}

// layer writes files (and any parent directory not listed, as root 0755) into a tar, sorted by
// path so the bytes are reproducible.
func layer(files []File) ([]byte, error) {
	byPath := map[string]File{}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
			return nil, fmt.Errorf("image file %q: want a clean absolute path", f.Path)
		}
		byPath[f.Path] = f
		for dir := path.Dir(f.Path); dir != "/"; dir = path.Dir(dir) {
			if _, ok := byPath[dir]; !ok {
				byPath[dir] = File{Path: dir, Dir: true, Mode: 0o755}
			}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := byPath[p]
		// Explicitly listed directories override the implicit ones added above.
		for _, g := range files {
			if g.Path == p {
				f = g
			}
		}
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Mode:    f.Mode,
			Uid:     f.UID,
			Gid:     f.GID,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		if f.Dir {
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
			continue
		}
		data := f.Data
		if f.HostPath != "" {
			b, err := os.ReadFile(f.HostPath)
			if err != nil {
				return nil, fmt.Errorf("image file %s: %w", f.Path, err)
			}
			data = b
		}
		hdr.Typeflag = tar.TypeReg
		hdr.Size = int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
