package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LabelClusterCredential is set on every Secret a ClusterDatabricksCredential writes, to the
// cluster credential's name. Those Secrets also carry LabelCredential (same value), which the
// manager's Secret cache selects on; this label tells them apart from the Secrets of a namespaced
// DatabricksCredential and is what the operator lists to find, and delete, the Secrets of
// namespaces that no longer match.
const LabelClusterCredential = "dbtoken.io/cluster-credential"

// MaxFailedNamespaces bounds status.failedNamespaces of a ClusterDatabricksCredential; the Ready
// message always counts every failure.
const MaxFailedNamespaces = 20

// Reasons that only a ClusterDatabricksCredential reports. All other Ready reasons mean the same
// for both kinds.
const (
	// ReasonNoMatchingNamespaces (False): no existing namespace matches spec.namespaceSelector or
	// spec.namespaces, so no token is requested and no Secret is written.
	ReasonNoMatchingNamespaces = "NoMatchingNamespaces"
	// ReasonWriteFailed (False): the API server refused to write the token Secret in a namespace
	// (e.g. a ResourceQuota on Secrets or an admission policy). Listed per namespace in
	// status.failedNamespaces.
	ReasonWriteFailed = "WriteFailed"
)

// ClusterClientSecretReference points at a Secret holding a service principal's OAuth client ID
// and client secret, in a namespace of the platform team's choosing. Only the operator reads it;
// the namespaces that receive tokens never see it.
type ClusterClientSecretReference struct {
	// namespace of the Secret. Only a ClusterDatabricksCredential names one: a namespaced
	// DatabricksCredential always reads its own namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace"`

	// name of the Secret in that namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// clientIDKey is the key in the Secret holding the OAuth client ID (for Azure, the
	// application (client) ID GUID; for Databricks, the service principal's UUID).
	// Default "client-id".
	// +optional
	// +kubebuilder:default=client-id
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	ClientIDKey string `json:"clientIDKey,omitempty"`

	// clientSecretKey is the key in the Secret holding the OAuth client secret (for Azure, the
	// secret's Value, not its Secret ID). Default "client-secret".
	// +optional
	// +kubebuilder:default=client-secret
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	ClientSecretKey string `json:"clientSecretKey,omitempty"`
}

// ClusterCABundleReference points at a ConfigMap, in a namespace of the platform team's choosing,
// holding PEM certificates to trust for the token endpoint in addition to the system roots.
type ClusterCABundleReference struct {
	// namespace of the ConfigMap.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace"`

	// name of the ConfigMap in that namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// key in the ConfigMap holding the PEM bundle. Default "ca.crt".
	// +optional
	// +kubebuilder:default=ca.crt
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`
}

// ClusterAzureIdentity is AzureIdentity with a namespaced client-credentials reference.
type ClusterAzureIdentity struct {
	// tenantID is the Entra ID tenant (directory) ID, a GUID such as
	// f4da2730-4463-4910-98a7-13d0523c0b2a, or a verified domain such as contoso.onmicrosoft.com.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9][-.a-zA-Z0-9]*$`
	TenantID string `json:"tenantID"`

	// clientSecretRef names the Secret, and its namespace, with the application (client) ID and
	// client secret.
	// +required
	ClientSecretRef ClusterClientSecretReference `json:"clientSecretRef"`

	// authorityHost is the Entra ID login endpoint. Default https://login.microsoftonline.com;
	// sovereign clouds override it (https://login.microsoftonline.us for Azure Government,
	// https://login.chinacloudapi.cn for Azure China). Must be an https:// URL without a path, its host name in plain ASCII.
	// +optional
	// +kubebuilder:default="https://login.microsoftonline.com"
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''",message="authorityHost must be an https:// URL"
	// +kubebuilder:validation:XValidation:rule="self.matches('(?i)^https://[][A-Za-z0-9.:-]+([/?#].*)?$')",message="authorityHost must name its host in plain ASCII (letters, digits, '-' and '.'); write an internationalized domain name in its xn-- form"
	AuthorityHost string `json:"authorityHost,omitempty"`
}

// ClusterDatabricksIdentity is DatabricksIdentity with a namespaced client-credentials reference.
type ClusterDatabricksIdentity struct {
	// clientSecretRef names the Secret, and its namespace, with the service principal's client ID
	// and OAuth secret.
	// +required
	ClientSecretRef ClusterClientSecretReference `json:"clientSecretRef"`
}

// ClusterOAuth2Identity is OAuth2Identity with a namespaced client-credentials reference.
type ClusterOAuth2Identity struct {
	// tokenURL is the token endpoint, e.g. https://idp.example.com/oauth2/token. https only, host name in plain ASCII.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''",message="tokenURL must be an https:// URL"
	// +kubebuilder:validation:XValidation:rule="self.matches('(?i)^https://[][A-Za-z0-9.:-]+([/?#].*)?$')",message="tokenURL must name its host in plain ASCII (letters, digits, '-' and '.'); write an internationalized domain name in its xn-- form"
	TokenURL string `json:"tokenURL"`

	// clientSecretRef names the Secret, and its namespace, with the client ID and client secret.
	// +required
	ClientSecretRef ClusterClientSecretReference `json:"clientSecretRef"`

	// authStyle says how the client credentials are sent: Header (HTTP Basic, the default) or
	// Params (client_id and client_secret in the form body).
	// +optional
	// +kubebuilder:default=Header
	AuthStyle AuthStyle `json:"authStyle,omitempty"`
}

// The fields shared with DatabricksCredentialSpec repeat its markers; test/packaging compares the
// two generated schemas, so a change to one that is not made to the other fails the tests.
// +kubebuilder:validation:XValidation:rule="[has(self.azure), has(self.databricks), has(self.oauth2)].filter(x, x).size() == 1",message="exactly one identity block must be set: azure, databricks or oauth2"
// +kubebuilder:validation:XValidation:rule="has(self.namespaceSelector) || (has(self.namespaces) && size(self.namespaces) > 0)",message="set spec.namespaceSelector, spec.namespaces or both: they choose the namespaces that receive the token Secret"

// ClusterDatabricksCredentialSpec is a DatabricksCredentialSpec whose client-credentials Secret and
// CA ConfigMap live in a namespace of their own, plus the namespaces the token is written to. The
// shared fields have the same names, defaults and validation as in a DatabricksCredential.
type ClusterDatabricksCredentialSpec struct {
	// host is the Databricks workspace URL, e.g. https://adb-1234567890123456.7.azuredatabricks.net
	// or https://dbc-a1b2c3d4-e5f6.cloud.databricks.com. https only, host name in plain ASCII (an internationalized domain name in its xn-- form). It is written to the Secret
	// as DATABRICKS_HOST and, for the databricks block, is where the token is requested
	// ({host}/oidc/v1/token).
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''",message="host must be an https:// URL, e.g. https://adb-1234567890123456.7.azuredatabricks.net"
	// +kubebuilder:validation:XValidation:rule="self.matches('(?i)^https://[][A-Za-z0-9.:-]+([/?#].*)?$')",message="host must name its host in plain ASCII (letters, digits, '-' and '.'); write an internationalized domain name in its xn-- form"
	Host string `json:"host"`

	// azure obtains the token from Microsoft Entra ID with a service principal's client secret.
	// Exactly one of azure, databricks and oauth2 must be set.
	// +optional
	Azure *ClusterAzureIdentity `json:"azure,omitempty"`

	// databricks obtains the token from the workspace's own OAuth endpoint with a
	// Databricks-managed service principal's OAuth secret.
	// +optional
	Databricks *ClusterDatabricksIdentity `json:"databricks,omitempty"`

	// oauth2 obtains the token from any OAuth 2.0 token endpoint with the client-credentials grant.
	// +optional
	OAuth2 *ClusterOAuth2Identity `json:"oauth2,omitempty"`

	// scopes requested, sent space-separated. When set they replace the block's default:
	// azure "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default", databricks "all-apis", oauth2 none.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=512
	// +kubebuilder:validation:items:Pattern=`^[!#-\[\]-~]+$`
	Scopes []string `json:"scopes,omitempty"`

	// renewBefore is how long before the token expires it is replaced: the promise to every pod
	// that starts at any moment that its token has at least this long left (dbt reads its token
	// once, so a dbt run must finish within renewBefore). Default: half the issued token's
	// lifetime. Example: a 60-minute Databricks token with renewBefore 20m is replaced at minute
	// 40 (up to 10% of renewBefore earlier, for jitter), so a pod always gets at least 20 minutes.
	// A value at or above the token's lifetime is clamped to half the lifetime, with a Warning
	// event. Go duration syntax ("30m", "1h", "90s"); must be positive.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="renewBefore must be a positive duration such as 30m"
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`

	// caBundleRef names a ConfigMap, and its namespace, with extra PEM CA certificates to trust for
	// the token endpoint, on top of the system roots.
	// +optional
	CABundleRef *ClusterCABundleReference `json:"caBundleRef,omitempty"`

	// target describes the Secret the token is written to, the same in every selected namespace.
	// Default: a Secret named like the cluster credential with the keys DATABRICKS_HOST,
	// DATABRICKS_TOKEN and DATABRICKS_TOKEN_EXPIRES_AT. A namespace where a Secret of that name exists and is not ours is listed in
	// status.failedNamespaces (SecretConflict) and left untouched.
	// +optional
	Target TargetSecret `json:"target,omitempty"`

	// namespaceSelector selects, by label, the namespaces that receive the token Secret. An empty
	// selector ({}) selects every namespace. Namespaces that stop matching (relabelled, or the
	// selector changed) lose the Secret: the operator deletes the Secrets it wrote there, and
	// only those.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// namespaces lists namespaces that receive the token Secret by name, in addition to those the
	// selector matches. A listed namespace that does not exist yet is served once it is created.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces,omitempty"`
}

// NamespaceFailure is a selected namespace that does not hold a valid token, and why.
type NamespaceFailure struct {
	// namespace that is not served.
	// +required
	Namespace string `json:"namespace"`

	// reason, one of the Ready reasons: SecretConflict (a Secret of the target name exists there
	// and is not ours) or WriteFailed (the API server refused the write).
	// +required
	Reason string `json:"reason"`

	// message says what happened, in one line.
	// +optional
	Message string `json:"message,omitempty"`
}

// ClusterDatabricksCredentialStatus is what the controller observed: the fields of a
// DatabricksCredential's status, about the one token all selected namespaces share, plus how many
// namespaces are served and which are not. It never contains token material.
type ClusterDatabricksCredentialStatus struct {
	DatabricksCredentialStatus `json:",inline"`

	// namespaceCount is the number of selected namespaces whose Secret holds a valid token for the
	// current spec.
	// +optional
	NamespaceCount int32 `json:"namespaceCount,omitempty"`

	// failedNamespaces are selected namespaces without a valid token because of a problem in that
	// namespace, sorted by name; at most 20 are listed, the Ready message counts them all.
	// +optional
	// +listType=map
	// +listMapKey=namespace
	// +kubebuilder:validation:MaxItems=20
	FailedNamespaces []NamespaceFailure `json:"failedNamespaces,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cdbcred;cdbcreds,categories=dbtoken
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Namespaces",type=integer,JSONPath=`.status.namespaceCount`
// Expiry columns are strings, not dates: kubectl renders a future date as "<invalid>".
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Next Refresh",type=string,JSONPath=`.status.nextRefreshTime`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// The name is the value of the dbtoken.io/credential and dbtoken.io/cluster-credential labels on
// every Secret it writes, and label values are at most 63 characters.
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name must be at most 63 characters: it is a label value on every token Secret"

// ClusterDatabricksCredential is a DatabricksCredential for a platform team: one service
// principal's token, obtained with one exchange per refresh, written to a Secret in every namespace
// that spec.namespaceSelector or spec.namespaces selects. The client-credentials Secret stays in
// its own namespace; team namespaces receive tokens only. Ready=True means every selected
// namespace holds a valid token for the current spec.
type ClusterDatabricksCredential struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired token and where it goes.
	// +required
	Spec ClusterDatabricksCredentialSpec `json:"spec"`

	// status is what the controller observed.
	// +optional
	Status ClusterDatabricksCredentialStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ClusterDatabricksCredentialList is a list of ClusterDatabricksCredential.
type ClusterDatabricksCredentialList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterDatabricksCredential `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ClusterDatabricksCredential{}, &ClusterDatabricksCredentialList{})
}

// ClientSecretRef returns the client-credentials reference of whichever identity block is set,
// or nil when none is.
func (s *ClusterDatabricksCredentialSpec) ClientSecretRef() *ClusterClientSecretReference {
	switch {
	case s.Azure != nil:
		return &s.Azure.ClientSecretRef
	case s.Databricks != nil:
		return &s.Databricks.ClientSecretRef
	case s.OAuth2 != nil:
		return &s.OAuth2.ClientSecretRef
	}
	return nil
}

// CredentialSpec is the DatabricksCredentialSpec with the same identity, scopes, renewBefore and
// target, the references without their namespace: what the token request and the Secret are
// derived from, so both kinds share one implementation of the wire protocol and the rendering.
func (s *ClusterDatabricksCredentialSpec) CredentialSpec() DatabricksCredentialSpec {
	out := DatabricksCredentialSpec{
		Host:        s.Host,
		Scopes:      s.Scopes,
		RenewBefore: s.RenewBefore,
		Target:      s.Target,
	}
	switch {
	case s.Azure != nil:
		ref := s.Azure.ClientSecretRef.Local()
		out.Azure = &AzureIdentity{TenantID: s.Azure.TenantID, AuthorityHost: s.Azure.AuthorityHost, ClientSecretRef: &ref}
	case s.Databricks != nil:
		out.Databricks = &DatabricksIdentity{ClientSecretRef: s.Databricks.ClientSecretRef.Local()}
	case s.OAuth2 != nil:
		out.OAuth2 = &OAuth2Identity{TokenURL: s.OAuth2.TokenURL, AuthStyle: s.OAuth2.AuthStyle,
			ClientSecretRef: s.OAuth2.ClientSecretRef.Local()}
	}
	if s.CABundleRef != nil {
		out.CABundleRef = &CABundleReference{Name: s.CABundleRef.Name, Key: s.CABundleRef.Key}
	}
	return out
}

// Local is the reference without its namespace.
func (r ClusterClientSecretReference) Local() ClientSecretReference {
	return ClientSecretReference{Name: r.Name, ClientIDKey: r.ClientIDKey, ClientSecretKey: r.ClientSecretKey}
}

// TargetName is the name of the Secret the token is written to in every selected namespace.
func (c *ClusterDatabricksCredential) TargetName() string {
	if c.Spec.Target.Name != "" {
		return c.Spec.Target.Name
	}
	return c.Name
}

// IdentityKind names the identity block that is set (azure, databricks, oauth2), for metric
// labels and logs; "unknown" when none is. It is the namespaced spec's, of CredentialSpec.
func (s *ClusterDatabricksCredentialSpec) IdentityKind() string {
	spec := s.CredentialSpec()
	return spec.IdentityKind()
}
