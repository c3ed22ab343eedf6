package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Well-known names on the target Secret. Consumers may read the annotations; the operator uses
// them to decide, after a restart, whether the token in the Secret is still good.
const (
	// LabelCredential is set on every target Secret to the name of the DatabricksCredential that
	// owns it. The manager caches only Secrets carrying this label.
	LabelCredential = "dbtoken.io/credential"

	// AnnotationExpiresAt is the token's expiry, RFC 3339 in UTC.
	AnnotationExpiresAt = "dbtoken.io/expires-at"

	// AnnotationIssuedAt is when the token was obtained, RFC 3339 in UTC. Together with
	// AnnotationExpiresAt it gives the token's lifetime, from which the default renewBefore follows.
	AnnotationIssuedAt = "dbtoken.io/issued-at"

	// AnnotationInputsHash is a SHA-256 over everything the token depends on (identity block,
	// token endpoint, client ID, client-secret bytes, scopes, CA bundle). It never contains a secret.
	AnnotationInputsHash = "dbtoken.io/inputs-hash"

	// AnnotationDataHash is a SHA-256 over the Secret's data and the spec fields it was rendered
	// from (host and target). A mismatch means the Secret was edited by hand or the target changed.
	AnnotationDataHash = "dbtoken.io/data-hash"

	// DefaultHostKey and DefaultTokenKey are the Secret keys written when target.data is empty, so
	// that `envFrom` works as-is for the Databricks CLI and SDKs.
	DefaultHostKey  = "DATABRICKS_HOST"
	DefaultTokenKey = "DATABRICKS_TOKEN"

	// DefaultExpiresAtKey is the third default key: the token's expiry, RFC 3339 in UTC (the
	// value of AnnotationExpiresAt), for consumers that read the Secret as files and cannot see
	// annotations, such as the token-server sidecar (docs/long-runs.md). No Databricks client
	// reads it from the environment.
	DefaultExpiresAtKey = "DATABRICKS_TOKEN_EXPIRES_AT"
)

// ConditionReady is the one condition type. Ready=True means: the target Secret exists, this
// credential owns it, it was rendered for the current spec and client secret, and the token in it
// has not expired.
const ConditionReady = "Ready"

// ConditionStalled is set True, with Ready's reason and message, while Ready is False for a
// reason that no retry will clear by itself (everything but RefreshFailing): kstatus, which Flux
// uses, reports such an object as Failed rather than InProgress. It is absent otherwise.
const ConditionStalled = "Stalled"

// Reasons of the Ready condition; they are also the reasons of the Events the controller emits.
const (
	// ReasonTokenIssued (True): the Secret holds a valid token for the current spec.
	ReasonTokenIssued = "TokenIssued"
	// ReasonTokenPending (Unknown): the first token request for the current spec is still running
	// (a slow token endpoint); the pass returns and comes back when it finishes.
	ReasonTokenPending = "TokenPending"
	// ReasonRefreshFailing (True): the token is still valid but the last refresh failed.
	ReasonRefreshFailing = "RefreshFailing"
	// ReasonTokenExpired (False): refreshes keep failing and the token in the Secret has expired.
	ReasonTokenExpired = "TokenExpired"
	// ReasonSecretNotFound (False): an object the credential names does not exist: the
	// client-credentials or client-certificate Secret, the CA ConfigMap, or the ServiceAccount of
	// a federation or workloadIdentity block. The message names which.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretKeyMissing (False): the Secret or ConfigMap exists but a referenced key is missing or empty.
	ReasonSecretKeyMissing = "SecretKeyMissing"
	// ReasonInvalidClient (False): the identity provider does not know the client or its
	// credentials are wrong or expired (Entra 7000215, 7000222, 700016; OAuth invalid_client), or
	// it rejected a ServiceAccount token or certificate assertion (Entra 70021, 700211-700213,
	// 700024, 700027; a Databricks federation policy that does not match).
	ReasonInvalidClient = "InvalidClient"
	// ReasonNotFound (False): the tenant, resource or token endpoint does not exist (Entra 90002, 500011; HTTP 404).
	ReasonNotFound = "NotFound"
	// ReasonUnauthorized (False): the client is known but not allowed (unauthorized_client,
	// invalid_scope, HTTP 403 such as an IP access list). A bare HTTP 401 is InvalidClient.
	ReasonUnauthorized = "Unauthorized"
	// ReasonInvalidSpec (False): the spec cannot be used as written.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonInvalidTemplate (False): a target.data template fails to parse or render.
	ReasonInvalidTemplate = "InvalidTemplate"
	// ReasonHostNotAllowed (False): the token endpoint is not in the manager's --allowed-token-hosts.
	ReasonHostNotAllowed = "HostNotAllowed"
	// ReasonSecretConflict (False): a Secret with the target name exists and is not ours.
	ReasonSecretConflict = "SecretConflict"
	// ReasonTokenRefreshed is the Event reason for a newly written token.
	ReasonTokenRefreshed = "TokenRefreshed"
	// ReasonRefreshFailed is the Event reason for a failed exchange.
	ReasonRefreshFailed = "RefreshFailed"
	// ReasonRenewBeforeClamped is the Event reason when renewBefore was at or above the token's lifetime.
	ReasonRenewBeforeClamped = "RenewBeforeClamped"
	// ReasonRenewBeforeTooShort is the Event reason when renewBefore is below MinSidecarRenewBefore
	// for a token that lives long enough to allow it: a job that takes its tokens from the
	// token-server sidecar could be handed one that expires before it asks again.
	ReasonRenewBeforeTooShort = "RenewBeforeTooShort"
)

// AuthStyle says where an oauth2 block sends the client credentials.
// +kubebuilder:validation:Enum=Header;Params
type AuthStyle string

const (
	// AuthStyleHeader sends client_id and client_secret as HTTP Basic authentication.
	AuthStyleHeader AuthStyle = "Header"
	// AuthStyleParams sends them as form fields in the request body.
	AuthStyleParams AuthStyle = "Params"
)

// ClientSecretReference points at a Secret in the credential's own namespace that holds a service
// principal's OAuth client ID and client secret. The operator reads it; job pods never see it.
type ClientSecretReference struct {
	// name of the Secret, in the same namespace as the DatabricksCredential. Cross-namespace
	// references are not possible: a credential can only use its own namespace's Secrets.
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

// AzureIdentity is a Microsoft Entra ID application (service principal) using the
// client-credentials grant. The token request is `POST {authorityHost}/{tenantID}/oauth2/v2.0/token`;
// the default scope is the Azure Databricks resource `2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default`.
// Entra tokens are accepted by every Azure Databricks workspace the service principal was added to.
//
// The application proves its identity in exactly one of three ways: a client secret
// (clientSecretRef, sent as client_secret), a Kubernetes ServiceAccount token that a federated
// identity credential on the application trusts (workloadIdentity), or a certificate whose private
// key signs a short-lived client assertion (clientCertificateRef). The last two are sent as a
// client_assertion of type urn:ietf:params:oauth:client-assertion-type:jwt-bearer; no client
// secret exists anywhere.
// +kubebuilder:validation:XValidation:rule="[has(self.clientSecretRef), has(self.workloadIdentity), has(self.clientCertificateRef)].filter(x, x).size() == 1",message="azure needs exactly one of clientSecretRef, workloadIdentity and clientCertificateRef"
// +kubebuilder:validation:XValidation:rule="has(self.clientSecretRef) ? !has(self.clientID) : has(self.clientID)",message="azure.clientID is required with workloadIdentity and clientCertificateRef, and not allowed with clientSecretRef (which reads the client ID from its Secret)"
type AzureIdentity struct {
	// tenantID is the Entra ID tenant (directory) ID, a GUID such as
	// f4da2730-4463-4910-98a7-13d0523c0b2a, or a verified domain such as contoso.onmicrosoft.com.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9][-.a-zA-Z0-9]*$`
	TenantID string `json:"tenantID"`

	// clientID is the application (client) ID, a GUID. Required with workloadIdentity and
	// clientCertificateRef, which have no Secret to read it from; not allowed with clientSecretRef,
	// whose Secret holds it.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`
	ClientID string `json:"clientID,omitempty"`

	// clientSecretRef names the Secret with the application (client) ID and client secret.
	// Exactly one of clientSecretRef, workloadIdentity and clientCertificateRef must be set.
	// +optional
	ClientSecretRef *ClientSecretReference `json:"clientSecretRef,omitempty"`

	// workloadIdentity authenticates with a token of a Kubernetes ServiceAccount in the
	// credential's namespace, which a federated identity credential on the application trusts
	// (issuer: the cluster's service-account issuer; subject:
	// system:serviceaccount:<namespace>:<serviceAccountName>; audience: api://AzureADTokenExchange).
	// The cluster's issuer must be publicly reachable for Entra to fetch its keys (AKS: the OIDC
	// issuer feature).
	// +optional
	WorkloadIdentity *AzureWorkloadIdentity `json:"workloadIdentity,omitempty"`

	// clientCertificateRef names a kubernetes.io/tls Secret (keys tls.crt and tls.key) with a
	// certificate uploaded to the application and its RSA private key, which signs a five-minute
	// client assertion (PS256) for every token request.
	// +optional
	ClientCertificateRef *ClientCertificateReference `json:"clientCertificateRef,omitempty"`

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

// AzureWorkloadIdentity names the ServiceAccount whose token is the Entra client assertion.
// The operator requests the token itself (TokenRequest API, audience api://AzureADTokenExchange,
// ten minutes, the shortest the API allows); nothing is mounted into any pod.
type AzureWorkloadIdentity struct {
	// serviceAccountName is a ServiceAccount in the credential's namespace. There is no namespace
	// field: a credential can only use its own namespace's ServiceAccounts.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ServiceAccountName string `json:"serviceAccountName"`
}

// ClientCertificateReference points at a Secret in the credential's namespace holding a
// certificate and its private key, as cert-manager writes them: tls.crt (PEM certificate, the
// leaf first) and tls.key (PEM RSA private key, PKCS#1 or PKCS#8, unencrypted).
type ClientCertificateReference struct {
	// name of the Secret, in the same namespace as the DatabricksCredential.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// DatabricksIdentity is a Databricks-managed service principal using OAuth machine-to-machine
// (client credentials). The token request is `POST {host}/oidc/v1/token` with the client ID and
// secret as HTTP Basic authentication; the default scope is `all-apis`. The token is valid for
// this workspace only.
type DatabricksIdentity struct {
	// clientSecretRef names the Secret with the service principal's client ID and OAuth secret.
	// +required
	ClientSecretRef ClientSecretReference `json:"clientSecretRef"`
}

// OAuth2Identity is any OAuth 2.0 token endpoint that supports the client-credentials grant,
// for identity providers other than Entra ID and Databricks. No scope is sent unless scopes is set.
type OAuth2Identity struct {
	// tokenURL is the token endpoint, e.g. https://idp.example.com/oauth2/token. https only, host name in plain ASCII.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''",message="tokenURL must be an https:// URL"
	// +kubebuilder:validation:XValidation:rule="self.matches('(?i)^https://[][A-Za-z0-9.:-]+([/?#].*)?$')",message="tokenURL must name its host in plain ASCII (letters, digits, '-' and '.'); write an internationalized domain name in its xn-- form"
	TokenURL string `json:"tokenURL"`

	// clientSecretRef names the Secret with the client ID and client secret.
	// +required
	ClientSecretRef ClientSecretReference `json:"clientSecretRef"`

	// authStyle says how the client credentials are sent: Header (HTTP Basic, the default) or
	// Params (client_id and client_secret in the form body).
	// +optional
	// +kubebuilder:default=Header
	AuthStyle AuthStyle `json:"authStyle,omitempty"`
}

// FederationIdentity obtains the token with Databricks OAuth token federation: the operator
// requests a token of a Kubernetes ServiceAccount (TokenRequest API) and exchanges it at
// `POST {host}/oidc/v1/token` (RFC 8693 token exchange, grant_type
// urn:ietf:params:oauth:grant-type:token-exchange, subject_token_type
// urn:ietf:params:oauth:token-type:jwt). No client secret exists anywhere. A Databricks
// federation policy must trust the token: issuer = the cluster's service-account issuer, subject =
// system:serviceaccount:<namespace>:<serviceAccountName>, audiences including audience. The
// Databricks token lives no longer than the ServiceAccount token (expirationSeconds).
type FederationIdentity struct {
	// serviceAccountName is a ServiceAccount in the credential's namespace whose token is
	// exchanged. There is no namespace field: a credential can only use its own namespace's
	// ServiceAccounts, so the policy's subject is system:serviceaccount:<this namespace>:<name>.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ServiceAccountName string `json:"serviceAccountName"`

	// audience of the ServiceAccount token (its aud claim); the federation policy must list it in
	// its audiences. A policy without audiences accepts only the Databricks account ID, which the
	// operator cannot know, so this field is required: use the account ID, or the audience the
	// policy lists. Never one of the API server's own audiences (e.g.
	// https://kubernetes.default.svc): such a token would also be valid against the cluster. The
	// schema refuses that one; for the others, which differ per cluster, the operator checks every
	// minted token with a TokenReview and never sends one the API accepts (Ready=False,
	// InvalidSpec).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^[!-~]+$`
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('https://kubernetes.default.svc')",message="federation.audience must not be the Kubernetes API server's audience"
	Audience string `json:"audience"`

	// clientID is the application ID (a UUID) of the Databricks service principal whose service
	// principal federation policy trusts the token; it is sent as client_id. Leave it empty for an
	// account-wide federation policy, which maps the token's subject to a user or service principal.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`
	ClientID string `json:"clientID,omitempty"`

	// expirationSeconds is the requested lifetime of the ServiceAccount token, and so the longest
	// the Databricks token can live: Databricks issues it for at most the federated token's
	// remaining lifetime. Default 3600 (one hour, Databricks' usual token lifetime); minimum 600,
	// the TokenRequest API's minimum. The API server may shorten it
	// (--service-account-max-token-expiration).
	// +optional
	// +kubebuilder:default=3600
	// +kubebuilder:validation:Minimum=600
	// +kubebuilder:validation:Maximum=86400
	ExpirationSeconds int64 `json:"expirationSeconds,omitempty"`
}

// CABundleReference points at a ConfigMap in the credential's namespace holding PEM certificates
// to trust for the token endpoint, in addition to the system roots (for a corporate TLS proxy).
type CABundleReference struct {
	// name of the ConfigMap, in the same namespace as the DatabricksCredential.
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

// TargetSecret describes the Secret the token is written to. The Secret is of type Opaque, owned by
// the DatabricksCredential (deleting the credential garbage-collects it) and labelled
// dbtoken.io/credential=<credential name>.
// +kubebuilder:validation:XValidation:rule="!has(self.labels) || self.labels.all(k, !k.startsWith('dbtoken.io/'))",message="target.labels must not use the reserved dbtoken.io/ prefix"
// +kubebuilder:validation:XValidation:rule="!has(self.annotations) || self.annotations.all(k, !k.startsWith('dbtoken.io/'))",message="target.annotations must not use the reserved dbtoken.io/ prefix"
type TargetSecret struct {
	// name of the Secret to write, in the credential's namespace. Default: the credential's name.
	// If a Secret with this name exists and is not owned by this credential, the operator leaves
	// it untouched and reports Ready=False with reason SecretConflict.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name,omitempty"`

	// labels are copied onto the Secret (e.g. for a backup tool's selector). Keys under
	// dbtoken.io/ are reserved.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Labels map[string]string `json:"labels,omitempty"`

	// annotations are copied onto the Secret (e.g. reloader.stakater.com/match: "true").
	// Keys under dbtoken.io/ are reserved.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Annotations map[string]string `json:"annotations,omitempty"`

	// data maps Secret keys to Go text/template strings. When empty, the Secret holds
	// DATABRICKS_HOST (host without a trailing slash), DATABRICKS_TOKEN and
	// DATABRICKS_TOKEN_EXPIRES_AT (the expiry, RFC 3339, for the token-server sidecar). When set, the Secret
	// holds exactly these keys, each rendered with .Token (the access token), .Host (the host URL),
	// .Hostname (host[:port], no scheme, as dbt's profiles.yml wants) and .ExpiresAt (RFC 3339).
	// Example: {"profiles.yml": "...\n      host: {{ .Hostname }}\n      token: {{ .Token }}\n",
	// "DATABRICKS_TOKEN": "{{ .Token }}"}. The token may only be written out as it is: as
	// {{ .Token }} (or {{ $.Token }}) alone in its action. A template that tests, compares,
	// measures, indexes, slices or transforms .Token, passes it to a function or keeps it in a
	// variable is refused, as is one that prints or passes on the whole data (. or $): whether such
	// a template fails would reveal the token, bit by bit, to whoever reads the status. .Host,
	// .Hostname and .ExpiresAt may be used freely. A template that fails to parse or render makes
	// the credential Ready=False with reason InvalidTemplate and leaves an existing Secret
	// untouched. Because one template must not stall the operator for everyone, range, define,
	// block and template actions are refused and the rendered data is capped at 1 MiB.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[-._a-zA-Z0-9]+$') && size(k) <= 253)",message="target.data keys must be valid Secret keys (letters, digits, '-', '_', '.')"
	Data map[string]string `json:"data,omitempty"`
}

// DatabricksCredentialSpec is the desired token: which identity obtains it, for which workspace,
// how early it is renewed, and where it is written.
// +kubebuilder:validation:XValidation:rule="[has(self.azure), has(self.databricks), has(self.oauth2), has(self.federation)].filter(x, x).size() == 1",message="exactly one identity block must be set: azure, databricks, oauth2 or federation"
type DatabricksCredentialSpec struct {
	// host is the Databricks workspace URL, e.g. https://adb-1234567890123456.7.azuredatabricks.net
	// or https://dbc-a1b2c3d4-e5f6.cloud.databricks.com. https only, host name in plain ASCII (an internationalized domain name in its xn-- form). It is written to the Secret
	// as DATABRICKS_HOST and, for the databricks and federation blocks, is where the token is
	// requested ({host}/oidc/v1/token).
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''",message="host must be an https:// URL, e.g. https://adb-1234567890123456.7.azuredatabricks.net"
	// +kubebuilder:validation:XValidation:rule="self.matches('(?i)^https://[][A-Za-z0-9.:-]+([/?#].*)?$')",message="host must name its host in plain ASCII (letters, digits, '-' and '.'); write an internationalized domain name in its xn-- form"
	Host string `json:"host"`

	// azure obtains the token from Microsoft Entra ID with an application's client secret,
	// ServiceAccount token (workload identity) or certificate.
	// Exactly one of azure, databricks, oauth2 and federation must be set.
	// +optional
	Azure *AzureIdentity `json:"azure,omitempty"`

	// databricks obtains the token from the workspace's own OAuth endpoint with a
	// Databricks-managed service principal's OAuth secret.
	// +optional
	Databricks *DatabricksIdentity `json:"databricks,omitempty"`

	// oauth2 obtains the token from any OAuth 2.0 token endpoint with the client-credentials grant.
	// +optional
	OAuth2 *OAuth2Identity `json:"oauth2,omitempty"`

	// federation obtains the token from the workspace's own OAuth endpoint by exchanging a
	// Kubernetes ServiceAccount token (Databricks OAuth token federation); no client secret exists.
	// +optional
	Federation *FederationIdentity `json:"federation,omitempty"`

	// scopes requested, sent space-separated. When set they replace the block's default:
	// azure "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default", databricks and federation "all-apis",
	// oauth2 none.
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

	// caBundleRef names a ConfigMap with extra PEM CA certificates to trust for the token endpoint,
	// on top of the system roots.
	// +optional
	CABundleRef *CABundleReference `json:"caBundleRef,omitempty"`

	// target describes the Secret the token is written to. Default: a Secret named like the
	// credential with the keys DATABRICKS_HOST, DATABRICKS_TOKEN and DATABRICKS_TOKEN_EXPIRES_AT.
	// +optional
	Target TargetSecret `json:"target,omitempty"`
}

// DatabricksCredentialStatus is what the controller observed. It never contains token material.
type DatabricksCredentialStatus struct {
	// observedGeneration is the .metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// secretName is the name of the Secret holding the token.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// expiresAt is when the token in the Secret expires.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// lastRefreshTime is when the token in the Secret was obtained.
	// +optional
	LastRefreshTime *metav1.Time `json:"lastRefreshTime,omitempty"`

	// nextRefreshTime is when the controller will next request a token: expiresAt - renewBefore
	// (minus jitter) while healthy, or the next retry after a failure.
	// +optional
	NextRefreshTime *metav1.Time `json:"nextRefreshTime,omitempty"`

	// failedRefreshAttempts counts consecutive failed token requests; it drives the retry backoff
	// and resets to zero on success.
	// +optional
	FailedRefreshAttempts int32 `json:"failedRefreshAttempts,omitempty"`

	// conditions: Ready, with the reasons documented on the API package constants.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=dbcred;dbcreds,categories=dbtoken
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.status.secretName`
// Expiry columns are strings, not dates: kubectl renders a future date as "<invalid>".
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Next Refresh",type=string,JSONPath=`.status.nextRefreshTime`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// DatabricksCredential keeps a short-lived Databricks workspace OAuth token, obtained with a
// service principal's client credentials (or, with no secret at all, a ServiceAccount token or a
// certificate), fresh in a Secret that job pods (dbt, the Databricks CLI, SDKs) mount. The
// service principal's own credentials never leave the operator.
type DatabricksCredential struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired token.
	// +required
	Spec DatabricksCredentialSpec `json:"spec"`

	// status is what the controller observed.
	// +optional
	Status DatabricksCredentialStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// DatabricksCredentialList is a list of DatabricksCredential.
type DatabricksCredentialList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DatabricksCredential `json:"items"`
}

func init() {
	SchemeBuilder.Register(&DatabricksCredential{}, &DatabricksCredentialList{})
}

// ClientSecretRef returns the client-credentials reference of whichever identity block is set,
// or nil when none is or the block uses no client secret.
func (s *DatabricksCredentialSpec) ClientSecretRef() *ClientSecretReference {
	switch {
	case s.Azure != nil:
		return s.Azure.ClientSecretRef
	case s.Databricks != nil:
		return &s.Databricks.ClientSecretRef
	case s.OAuth2 != nil:
		return &s.OAuth2.ClientSecretRef
	}
	return nil
}

// CredentialsSecretName is the Secret holding the identity's credentials: the client-credentials
// Secret or the client-certificate Secret. Empty when the identity uses no Secret.
func (s *DatabricksCredentialSpec) CredentialsSecretName() string {
	if ref := s.ClientSecretRef(); ref != nil {
		return ref.Name
	}
	if s.Azure != nil && s.Azure.ClientCertificateRef != nil {
		return s.Azure.ClientCertificateRef.Name
	}
	return ""
}

// ServiceAccountName is the ServiceAccount whose token proves the identity (federation or
// azure.workloadIdentity), empty otherwise.
func (s *DatabricksCredentialSpec) ServiceAccountName() string {
	switch {
	case s.Federation != nil:
		return s.Federation.ServiceAccountName
	case s.Azure != nil && s.Azure.WorkloadIdentity != nil:
		return s.Azure.WorkloadIdentity.ServiceAccountName
	}
	return ""
}

// TargetName is the name of the Secret the token is written to.
func (c *DatabricksCredential) TargetName() string {
	if c.Spec.Target.Name != "" {
		return c.Spec.Target.Name
	}
	return c.Name
}

// IdentityKind names the identity block that is set (azure, databricks, oauth2, federation), for
// metric labels and logs; "unknown" when none is.
func (s *DatabricksCredentialSpec) IdentityKind() string {
	switch {
	case s.Azure != nil:
		return "azure"
	case s.Databricks != nil:
		return "databricks"
	case s.OAuth2 != nil:
		return "oauth2"
	case s.Federation != nil:
		return "federation"
	}
	return "unknown"
}
