package controllers

import (
	"fmt"
	"strings"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// clusterCredential is a ClusterDatabricksCredential with a databricks block whose client
// credentials are the Secret secretNS/secretName, selecting the namespaces labelled selector. The
// name is random: cluster-scoped objects outlive the namespaces of a spec.
func clusterCredential(host, secretNS, secretName string, selector map[string]string) *v1alpha1.ClusterDatabricksCredential {
	return &v1alpha1.ClusterDatabricksCredential{
		ObjectMeta: metav1.ObjectMeta{Name: "cdb-" + rand.String(8)},
		Spec: v1alpha1.ClusterDatabricksCredentialSpec{
			Host: host,
			Databricks: &v1alpha1.ClusterDatabricksIdentity{
				ClientSecretRef: v1alpha1.ClusterClientSecretReference{Namespace: secretNS, Name: secretName}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: selector},
		},
	}
}

// teamLabel is a label unique to one spec, so that its cluster credential selects only the
// namespaces the spec creates.
func teamLabel() map[string]string {
	return map[string]string{"dbtoken.test/team-" + rand.String(6): "true"}
}

// newLabelledNamespace creates a namespace with labels.
func newLabelledNamespace(labels map[string]string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "cdb-", Labels: labels}}
	ExpectWithOffset(1, k8sClient.Create(suiteCtx, ns)).To(Succeed())
	return ns.Name
}

// setNamespaceLabels replaces a namespace's labels.
func setNamespaceLabels(name string, labels map[string]string) {
	var ns corev1.Namespace
	ExpectWithOffset(1, k8sClient.Get(suiteCtx, types.NamespacedName{Name: name}, &ns)).To(Succeed())
	ns.Labels = labels
	ExpectWithOffset(1, k8sClient.Update(suiteCtx, &ns)).To(Succeed())
}

func getClusterCred(c *v1alpha1.ClusterDatabricksCredential) *v1alpha1.ClusterDatabricksCredential {
	out := &v1alpha1.ClusterDatabricksCredential{}
	ExpectWithOffset(1, k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(c), out)).To(Succeed())
	return out
}

// readyCondition returns the Ready condition (zero when there is none).
func readyCondition(conditions []metav1.Condition) metav1.Condition {
	if c := meta.FindStatusCondition(conditions, v1alpha1.ConditionReady); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// clusterReadyReason is "<status>/<reason>" of the Ready condition.
func clusterReadyReason(c *v1alpha1.ClusterDatabricksCredential) string {
	cond := readyCondition(getClusterCred(c).Status.Conditions)
	if cond.Type == "" {
		return "none"
	}
	return fmt.Sprintf("%s/%s", cond.Status, cond.Reason)
}

// clusterSecrets lists the Secrets labelled for a cluster credential, in every namespace.
func clusterSecrets(name string) []corev1.Secret {
	var list corev1.SecretList
	ExpectWithOffset(1, k8sClient.List(suiteCtx, &list, client.MatchingLabels{v1alpha1.LabelClusterCredential: name})).To(Succeed())
	return list.Items
}

// clusterStatusText is every message in the status of every cluster credential, for the leak
// check in AfterSuite.
func clusterStatusText() string {
	var list v1alpha1.ClusterDatabricksCredentialList
	Expect(k8sClient.List(suiteCtx, &list)).To(Succeed())
	var b strings.Builder
	for _, c := range list.Items {
		for _, cond := range c.Status.Conditions {
			b.WriteString(cond.Message + "\n")
		}
		for _, f := range c.Status.FailedNamespaces {
			b.WriteString(f.Message + "\n")
		}
	}
	return b.String()
}

// tokenInNamespace is DATABRICKS_TOKEN of the Secret ns/name, which must exist.
func tokenInNamespace(ns, name string) string {
	s := getSecret(ns, name)
	ExpectWithOffset(1, s).NotTo(BeNil(), "no Secret %s/%s", ns, name)
	return string(s.Data["DATABRICKS_TOKEN"])
}

// foreignSecret creates a Secret that is not the operator's at ns/name.
func foreignSecret(ns, name string) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       map[string][]byte{"DATABRICKS_TOKEN": []byte("somebody-elses-pat")},
	}
	ExpectWithOffset(1, k8sClient.Create(suiteCtx, s)).To(Succeed())
	return s
}
