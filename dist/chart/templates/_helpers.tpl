{{/*
Chart name, overridable with nameOverride. Kubernetes names are limited to 63 characters.
*/}}
{{- define "dbtoken.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name, the prefix of every resource: fullnameOverride, else <release>-<chart> (just the
release name when it already contains the chart name).
*/}}
{{- define "dbtoken.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A resource name: the full name plus a suffix, kept within 63 characters (a Service name is a DNS
label). RBAC objects, whose names may be longer, use the full name and suffix as they are.
Usage: include "dbtoken.suffixed" (list . "metrics")
*/}}
{{- define "dbtoken.suffixed" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- $full := include "dbtoken.fullname" $root }}
{{- printf "%s-%s" ($full | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{- define "dbtoken.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "dbtoken.labels" -}}
helm.sh/chart: {{ include "dbtoken.chart" . }}
{{ include "dbtoken.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: databricks-token-operator
{{- end }}

{{/*
Labels that select the manager pods.
*/}}
{{- define "dbtoken.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dbtoken.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
control-plane: controller-manager
{{- end }}

{{/*
The manager's ServiceAccount name.
*/}}
{{- define "dbtoken.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dbtoken.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The manager image reference.
*/}}
{{- define "dbtoken.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion (toString .Values.image.tag)) }}
{{- end }}

{{/*
The manager's command-line flags, one per line (see cmd/manager/main.go).
*/}}
{{- define "dbtoken.args" -}}
{{- if .Values.leaderElection.enabled }}
- --leader-elect
{{- end }}
- --health-probe-bind-address=:8081
{{- if .Values.metrics.enabled }}
- {{ printf "--metrics-bind-address=:%v" .Values.metrics.port | quote }}
- {{ printf "--metrics-secure=%t" .Values.metrics.secure | quote }}
{{- else }}
- --metrics-bind-address=0
{{- end }}
{{- with .Values.allowedTokenHosts }}
- {{ printf "--allowed-token-hosts=%s" (join "," .) | quote }}
{{- end }}
{{- with .Values.watchNamespaces }}
- {{ printf "--namespaces=%s" (join "," .) | quote }}
{{- end }}
{{- with .Values.tokenTimeout }}
- {{ printf "--token-timeout=%s" (toString .) | quote }}
{{- end }}
{{- with .Values.maxConcurrentReconciles }}
- {{ printf "--max-concurrent-reconciles=%v" . | quote }}
{{- end }}
{{- with .Values.logLevel }}
- {{ printf "--zap-log-level=%v" . | quote }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
Checks of combinations the schema cannot express.
*/}}
{{- define "dbtoken.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: without it every replica would write the same Secrets" }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "serviceAccount.create=false needs serviceAccount.name: the chart binds the manager's roles to that ServiceAccount" }}
{{- end }}
{{- end }}
