// Package secretvolume lays out a directory exactly as the kubelet lays out a Secret mounted as a
// volume, and updates it the way the kubelet does, for tests of code that reads such a volume
// while it changes.
//
// The kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go) publishes each version of the
// Secret in a new directory named ..YYYY_MM_DD_HH_MM_SS.<random>, holding one regular file per
// key; the symlink ..data points at the current one; and each key has a symlink KEY -> ..data/KEY
// at the top. An update:
//
//  1. writes every key into a new timestamped directory;
//  2. creates the symlink ..data_tmp -> <new directory> and renames it over ..data (the atomic
//     switch: a reader that resolves ..data sees either version, never a mix);
//  3. creates the per-key symlinks of new keys and removes those of keys no longer present;
//  4. removes the old timestamped directory.
//
// Readers that open KEY through the per-key symlinks resolve ..data once per file, so two keys
// read that way can come from two versions; that is the trap this package lets tests reproduce.
package secretvolume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

const (
	dataLink    = "..data"
	dataLinkTmp = "..data_tmp"
)

// Dir is a kubelet-style Secret volume. Methods are safe for concurrent use.
type Dir struct {
	path string

	mu      sync.Mutex
	current string   // name of the current timestamped directory
	keys    []string // keys of the current version
}

// New creates the volume at path (an existing empty directory, e.g. t.TempDir()) holding data.
func New(path string, data map[string][]byte) (*Dir, error) {
	d := &Dir{path: path}
	if err := d.Update(data); err != nil {
		return nil, err
	}
	return d, nil
}

// Path is the mount path.
func (d *Dir) Path() string { return d.path }

// Version is the name of the current timestamped directory (the ..data target).
func (d *Dir) Version() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current
}

// Update publishes data as the new version, in the kubelet's order (see the package comment).
func (d *Dir) Update(data map[string][]byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()

	// 1. The new version. The kubelet names it with os.MkdirTemp and this pattern.
	tsDir, err := os.MkdirTemp(d.path, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		return err
	}
	keys := make([]string, 0, len(data))
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(tsDir, k), v, 0o644); err != nil {
			return err
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	name := filepath.Base(tsDir)

	// 2. The atomic switch.
	tmp := filepath.Join(d.path, dataLinkTmp)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Symlink(name, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(d.path, dataLink)); err != nil {
		return err
	}

	// 3. Per-key symlinks.
	for _, k := range keys {
		link := filepath.Join(d.path, k)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join(dataLink, k), link); err != nil {
			return err
		}
	}
	for _, k := range d.keys {
		if _, ok := data[k]; !ok {
			if err := os.Remove(filepath.Join(d.path, k)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}

	// 4. The old version goes.
	if d.current != "" {
		if err := os.RemoveAll(filepath.Join(d.path, d.current)); err != nil {
			return fmt.Errorf("removing the old version: %w", err)
		}
	}
	d.current, d.keys = name, keys
	return nil
}

// Strings converts a map of strings into Secret data.
func Strings(m map[string]string) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out
}
