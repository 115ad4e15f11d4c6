{{/* Names, labels and checks shared by the templates. */}}

{{/* The chart name, overridable. */}}
{{- define "hookguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: "<release>-hookguard", or the release name when it already contains the
chart name. Truncated to 63 characters (the DNS label limit some names have).
*/}}
{{- define "hookguard.fullname" -}}
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

{{/* "<name>-<version>" for the helm.sh/chart label. */}}
{{- define "hookguard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "hookguard.labels" -}}
helm.sh/chart: {{ include "hookguard.chart" . }}
{{ include "hookguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hookguard
{{- end }}

{{/* The operator pods' selector; never change it (Deployment selectors are immutable). */}}
{{- define "hookguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hookguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Operator labels: the common ones plus the component. */}}
{{- define "hookguard.operatorSelectorLabels" -}}
{{ include "hookguard.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Bundled Redis selector. */}}
{{- define "hookguard.redisSelectorLabels" -}}
{{ include "hookguard.selectorLabels" . }}
app.kubernetes.io/component: redis
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "hookguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hookguard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image references; the tag defaults to the chart's appVersion. */}}
{{- define "hookguard.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) }}
{{- end }}
{{- define "hookguard.sidecarImage" -}}
{{- printf "%s:%s" .Values.sidecar.image.repository (default .Chart.AppVersion .Values.sidecar.image.tag) }}
{{- end }}

{{/* The leader-election Lease: `<fullname>-operator`, the operator's default for release `hookguard`. */}}
{{- define "hookguard.leaseName" -}}
{{- printf "%s-operator" (include "hookguard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The webhook Service's name (also the serving certificate's DNS name). */}}
{{- define "hookguard.webhookServiceName" -}}
{{- printf "%s-webhook" (include "hookguard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret holding the webhook's serving certificate (the operator's or cert-manager's). */}}
{{- define "hookguard.webhookCertSecretName" -}}
{{- printf "%s-webhook-cert" (include "hookguard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The bundled Redis' name. */}}
{{- define "hookguard.redisName" -}}
{{- printf "%s-redis" (include "hookguard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The dedup store URL handed to the injected sidecars. */}}
{{- define "hookguard.redisURL" -}}
{{- if .Values.redis.bundled.enabled }}
{{- printf "redis://%s.%s.svc:6379/0" (include "hookguard.redisName" .) .Release.Namespace }}
{{- else }}
{{- .Values.redis.url }}
{{- end }}
{{- end }}

{{/*
Namespaces excluded from injection and from the admission policy: kube-system, the release
namespace (the operator must never depend on itself to start) and any the user adds.
*/}}
{{- define "hookguard.excludedNamespaces" -}}
{{- $excluded := list "kube-system" .Release.Namespace }}
{{- range .Values.webhook.excludeNamespaces }}{{- $excluded = append $excluded . }}{{- end }}
{{- toJson ($excluded | uniq) }}
{{- end }}

{{/*
The namespaceSelector shared by the webhook and the policy binding: not the excluded
namespaces, and in namespace-scoped mode only the watched ones.
*/}}
{{- define "hookguard.namespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ include "hookguard.excludedNamespaces" . }}
  {{- if .Values.rbac.namespaced }}
  - key: kubernetes.io/metadata.name
    operator: In
    values: {{ toJson .Values.watchNamespaces }}
  {{- end }}
{{- end }}

{{/*
Checks values.schema.json cannot express with a readable message. Included by the
Deployment, so every render runs it.
*/}}
{{- define "hookguard.validate" -}}
{{- $redis := .Values.redis }}
{{- if and $redis.url $redis.bundled.enabled }}
{{- fail "redis: set either redis.url (an existing Redis) or redis.bundled.enabled=true (a trial Redis), not both" }}
{{- end }}
{{- if not (or $redis.url $redis.bundled.enabled) }}
{{- fail "redis: the sidecars need a shared dedup store: set redis.url to an existing Redis (redis://host:6379/0) or redis.bundled.enabled=true to try Hookguard out" }}
{{- end }}
{{- if $redis.url }}
{{- range $url := splitList "," $redis.url }}
{{- if not (regexMatch "^rediss?://[^/,\\s]+(/[0-9]+)?$" $url) }}
{{- fail (printf "redis.url %q is not a Redis URL: write redis://host:6379/0 (or rediss:// for TLS; several, comma-separated, with redis.mode=cluster)" $url) }}
{{- end }}
{{- if contains "@" $url }}
{{- fail "redis.url must not hold a password (it would sit in every pod spec): put it in a Secret in each namespace with injected pods and set redis.passwordSecret.name (and .key)" }}
{{- end }}
{{- end }}
{{- if and (contains "," $redis.url) (ne $redis.mode "cluster") }}
{{- fail "redis.url lists several URLs: that is a Redis Cluster's seed nodes, so set redis.mode=cluster, or give one URL" }}
{{- end }}
{{- end }}
{{- if and $redis.url $redis.tls (not (hasPrefix "rediss://" $redis.url)) }}
{{- fail "redis.tls is true but redis.url does not start with rediss://" }}
{{- end }}
{{- if and $redis.url (not $redis.tls) (hasPrefix "rediss://" $redis.url) }}
{{- fail "redis.url starts with rediss:// (TLS): set redis.tls=true as well" }}
{{- end }}
{{- if and (eq $redis.mode "cluster") $redis.bundled.enabled }}
{{- fail "redis.mode=cluster needs redis.url pointing at a Redis Cluster: the bundled Redis is a single node" }}
{{- end }}
{{- if and .Values.rbac.namespaced (not .Values.watchNamespaces) }}
{{- fail "rbac.namespaced=true needs watchNamespaces: the namespaces the operator may watch and inject into" }}
{{- end }}
{{- if and .Values.rbac.namespaced (has .Release.Namespace .Values.watchNamespaces) }}
{{- fail (printf "watchNamespaces must not contain the release namespace %q: the webhook never injects into the operator's own namespace" .Release.Namespace) }}
{{- end }}
{{- end }}
