package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/test/idp"
)

const caConfigMap = "idp-ca"

// layout places the objects: service principal j lives in namespace j mod namespaces, and
// credential i uses service principal i mod M, in that principal's namespace. So every identity
// is in exactly one namespace, and "token requests per identity" means the same whatever a
// shared token cache keys on.
//
// prefix sets a layout apart from the others of the run: it starts its namespaces (after
// "bench-"), service principal names, IdP client IDs and credential names, so that its objects,
// identities and writes are its own. The main layout has none.
type layout struct {
	n, m, namespaces int
	prefix           string
}

func (l layout) namespace(j int) string { return fmt.Sprintf("bench-%s%02d", l.prefix, j) }
func (l layout) spNamespace(sp int) string {
	return l.namespace(sp % l.namespaces)
}
func (l layout) spName(sp int) string   { return fmt.Sprintf("%ssp-%04d", l.prefix, sp) }
func (l layout) clientID(sp int) string { return "bench-" + l.spName(sp) }
func (l layout) credKey(i int) types.NamespacedName {
	return types.NamespacedName{Namespace: l.spNamespace(i % l.m), Name: fmt.Sprintf("%scred-%05d", l.prefix, i)}
}

// ownsNamespace reports whether namespace ns is one of the layout's.
func (l layout) ownsNamespace(ns string) bool {
	for j := 0; j < l.namespaces; j++ {
		if l.namespace(j) == ns {
			return true
		}
	}
	return false
}

// parallel runs fn(0..n-1) on conc workers and returns the first error (after all workers stop).
// Transient API errors are retried a few times.
func parallel(ctx context.Context, n, conc int, fn func(ctx context.Context, i int) error) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < min(conc, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := retry(ctx, func() error { return fn(ctx, i) }); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

func retry(ctx context.Context, fn func() error) error {
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || attempt == 6 || !transient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay *= 2
	}
}

func transient(err error) bool {
	var ne net.Error
	return apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || errors.As(err, &ne)
}

// setupIdentities creates the namespaces, a CA ConfigMap per namespace, and M service principals:
// a client Secret each, registered on the IdP.
func setupIdentities(ctx context.Context, cl client.Client, s *idp.Server, l layout, conc int) error {
	for j := 0; j < l.namespaces; j++ {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: l.namespace(j)}}
		if err := client.IgnoreAlreadyExists(cl.Create(ctx, ns)); err != nil {
			return fmt.Errorf("creating namespace: %w", err)
		}
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: l.namespace(j), Name: caConfigMap},
			Data:       map[string]string{"ca.crt": string(s.CACertPEM())},
		}
		if err := client.IgnoreAlreadyExists(cl.Create(ctx, cm)); err != nil {
			return fmt.Errorf("creating the CA ConfigMap: %w", err)
		}
	}
	return parallel(ctx, l.m, conc, func(ctx context.Context, sp int) error {
		clientID := l.clientID(sp)
		secret := "s3cr3t-" + rand.Text()
		s.AddDatabricksClient(clientID, secret)
		err := cl.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: l.spNamespace(sp), Name: l.spName(sp)},
			Data:       map[string][]byte{"client-id": []byte(clientID), "client-secret": []byte(secret)},
		})
		if err != nil {
			return fmt.Errorf("creating client Secret %s: %w", l.spName(sp), err)
		}
		return nil
	})
}

// credential is credential i: the databricks block against the IdP, trusting its CA.
func credential(l layout, i int, host string) *v1alpha1.DatabricksCredential {
	key := l.credKey(i)
	return &v1alpha1.DatabricksCredential{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Spec: v1alpha1.DatabricksCredentialSpec{
			Host:        host,
			Databricks:  &v1alpha1.DatabricksIdentity{ClientSecretRef: v1alpha1.ClientSecretReference{Name: l.spName(i % l.m)}},
			CABundleRef: &v1alpha1.CABundleReference{Name: caConfigMap},
		},
	}
}

// createCredentials creates the N credentials on conc workers and returns when each create
// call returned (indexed by credential).
func createCredentials(ctx context.Context, cl client.Client, l layout, host string, conc int, onCreated func()) (created []time.Time, calls []float64, err error) {
	created = make([]time.Time, l.n)
	calls = make([]float64, l.n)
	err = parallel(ctx, l.n, conc, func(ctx context.Context, i int) error {
		t := time.Now()
		err := cl.Create(ctx, credential(l, i, host))
		calls[i] = time.Since(t).Seconds()
		if apierrors.IsAlreadyExists(err) {
			err = nil // a retried create whose first attempt went through
		}
		if err != nil {
			return fmt.Errorf("creating credential %d: %w", i, err)
		}
		created[i] = time.Now()
		if onCreated != nil {
			onCreated()
		}
		return nil
	})
	return created, calls, err
}

// createUnrelated creates k Secrets of size bytes each, round-robin over the namespaces, without
// our label: Secrets the operator has no business with.
func createUnrelated(ctx context.Context, cl client.Client, l layout, k, size, conc int) error {
	blob := make([]byte, size)
	_, _ = rand.Read(blob)
	return parallel(ctx, k, conc, func(ctx context.Context, i int) error {
		err := cl.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: l.namespace(i % l.namespaces), Name: fmt.Sprintf("unrelated-%05d", i)},
			Data:       map[string][]byte{"blob": blob},
		})
		if apierrors.IsAlreadyExists(err) {
			err = nil
		}
		return err
	})
}

// wipeStatus removes every credential's status through the status subresource.
func wipeStatus(ctx context.Context, cl client.Client, l layout, conc int) error {
	patch := client.RawPatch(types.MergePatchType, []byte(`{"status":null}`))
	return parallel(ctx, l.n, conc, func(ctx context.Context, i int) error {
		key := l.credKey(i)
		c := &v1alpha1.DatabricksCredential{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		if err := cl.Status().Patch(ctx, c, patch); err != nil {
			return fmt.Errorf("wiping the status of %s: %w", key, err)
		}
		return nil
	})
}
