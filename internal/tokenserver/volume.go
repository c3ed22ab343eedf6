package tokenserver

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// DataLink is the symlink through which the kubelet publishes the current version of a Secret,
// ConfigMap or projected volume: it points at a timestamped directory holding every key, and an
// update writes a new directory, then renames a new symlink over this one (atomic), then removes
// the old directory.
const DataLink = "..data"

// Size limits of the files read per request. A token is a few KiB (Entra JWTs are the largest,
// about 2–3 KiB); the limits only keep a wrong mount from making every request read megabytes.
const (
	MaxTokenBytes   = 16 << 10
	MaxExpiresBytes = 128
	MaxHostBytes    = 2 << 10
)

// readAttempts bounds the retries when the kubelet swaps versions while a request reads: each
// swap needs a Secret update, so a second attempt is nearly always enough.
const readAttempts = 3

// Volume is a Secret mounted as a volume (not with subPath: a subPath mount is a copy that the
// kubelet never updates, and it has no ..data link).
type Volume struct {
	Dir        string // the mount path
	TokenKey   string // e.g. DATABRICKS_TOKEN
	ExpiresKey string // e.g. DATABRICKS_TOKEN_EXPIRES_AT; may be absent from the Secret
	HostKey    string // e.g. DATABRICKS_HOST; "" when the host is configured instead
}

// Snapshot is one version of the Secret, read from a single timestamped directory.
type Snapshot struct {
	Version    string // the ..data target, e.g. ..2026_11_28_18_00_00.123456789 (not secret)
	Token      string // trimmed of surrounding whitespace
	Expires    string // the ExpiresKey file, trimmed; "" when the key is absent
	HasExpires bool
	Host       string // the HostKey file, trimmed; "" when absent or not asked for
}

// Errors of Read; each wraps one of these so that the handler can answer precisely. Messages name
// keys and paths, never contents.
var (
	ErrNotVolume    = errors.New("not a Secret volume")
	ErrUnreadable   = errors.New("the Secret volume cannot be read")
	ErrKeyMissing   = errors.New("key missing from the Secret")
	ErrFileTooLarge = errors.New("file too large")
	ErrNotRegular   = errors.New("not a regular file")
	ErrChurning     = errors.New("the Secret volume kept changing while it was read")
)

// Read returns the current version of the Secret: it resolves ..data once, reads every key from
// that one directory, and checks that ..data still points there afterwards. If it does, the
// kubelet had not swapped (and so had not started removing that directory) before the reads
// ended, so the token, its expiry and the host are one consistent version. If it does not, the
// reads may have raced the removal and Read starts over.
func (v *Volume) Read() (Snapshot, error) {
	link := filepath.Join(v.Dir, DataLink)
	for range readAttempts {
		target, err := readDataLink(link)
		if err != nil {
			return Snapshot{}, err
		}
		snap, readErr := v.readVersion(target)
		again, err := readDataLink(link)
		if err != nil {
			return Snapshot{}, err
		}
		if again != target {
			continue
		}
		return snap, readErr
	}
	return Snapshot{}, fmt.Errorf("%w: ..data changed %d times during one read", ErrChurning, readAttempts)
}

// readDataLink returns the ..data target, which the kubelet always writes as a single relative
// path element inside the volume.
func readDataLink(link string) (string, error) {
	target, err := os.Readlink(link)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.EINVAL):
		// EINVAL: ..data exists but is not a symlink. Either way this is not a kubelet volume,
		// typically a Secret key mounted with subPath, or the wrong directory.
		return "", fmt.Errorf("%w: %s has no %s symlink; mount the whole Secret as a volume (not with subPath) and point --secret-dir at its mount path", ErrNotVolume, filepath.Dir(link), DataLink)
	case err != nil:
		return "", fmt.Errorf("%w: %v", ErrUnreadable, err)
	}
	if target == "" || target == "." || target == ".." || strings.ContainsRune(target, '/') {
		return "", fmt.Errorf("%w: %s points outside the volume", ErrNotVolume, link)
	}
	return target, nil
}

func (v *Volume) readVersion(target string) (Snapshot, error) {
	dir := filepath.Join(v.Dir, target)
	snap := Snapshot{Version: target}
	tok, err := readKey(dir, v.TokenKey, MaxTokenBytes)
	if err != nil {
		return snap, err
	}
	snap.Token = strings.TrimSpace(string(tok))
	if v.ExpiresKey != "" {
		b, err := readKey(dir, v.ExpiresKey, MaxExpiresBytes)
		switch {
		case errors.Is(err, ErrKeyMissing):
		case err != nil:
			return snap, err
		default:
			snap.Expires, snap.HasExpires = strings.TrimSpace(string(b)), true
		}
	}
	if v.HostKey != "" {
		b, err := readKey(dir, v.HostKey, MaxHostBytes)
		switch {
		case errors.Is(err, ErrKeyMissing):
		case err != nil:
			return snap, err
		default:
			snap.Host = strings.TrimSpace(string(b))
		}
	}
	return snap, nil
}

// readKey reads dir/key, refusing anything but a regular file of at most limit bytes. Inside a
// kubelet version directory every key is a regular file; O_NOFOLLOW and O_NONBLOCK keep a
// symlink or a FIFO put there by something else from redirecting or blocking the read.
func readKey(dir, key string, limit int64) ([]byte, error) {
	path := filepath.Join(dir, key)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s", ErrKeyMissing, key)
	case errors.Is(err, syscall.ELOOP):
		return nil, fmt.Errorf("%w: %s is a symlink inside the version directory", ErrNotRegular, key)
	case err != nil:
		return nil, fmt.Errorf("%w: opening %s: %v", ErrUnreadable, key, unwrapPathError(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreadable, key, unwrapPathError(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s", ErrNotRegular, key)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%w: %s has %d bytes, at most %d are read", ErrFileTooLarge, key, fi.Size(), limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrUnreadable, key, unwrapPathError(err))
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s has more than %d bytes", ErrFileTooLarge, key, limit)
	}
	return b, nil
}

// unwrapPathError drops the path of an *fs.PathError (the caller names the key instead), keeping
// messages short and the same for every version directory.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ValidKey reports whether name can be a Secret key that Read opens inside the volume: one path
// element (Kubernetes keys match [-._a-zA-Z0-9]+), not . or .., and not the kubelet's own
// ..-prefixed entries.
func ValidKey(name string) bool {
	if name == "" || len(name) > 253 || strings.HasPrefix(name, "..") || name == "." {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
