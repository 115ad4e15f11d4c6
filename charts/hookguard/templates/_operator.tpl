{{/*
The operator's command line, environment and volumes. The flag names are the operator's
(`hookguard-operator run --help`; operator/ADMISSION.md for the webhook and sidecar ones).
*/}}

{{- define "hookguard.operatorArgs" -}}
- run
- --leader-election=true
- --lease-namespace=$(POD_NAMESPACE)
- --lease-name={{ include "hookguard.leaseName" . }}
- --identity=$(POD_NAME)
- --metrics-listen=0.0.0.0:8080
- --log-format={{ .Values.operator.logFormat }}
{{- if .Values.rbac.namespaced }}
- --namespace={{ join "," .Values.watchNamespaces }}
{{- end }}
- --webhook-listen=0.0.0.0:9443
- --webhook-service={{ include "hookguard.webhookServiceName" . }}
- --webhook-namespace=$(POD_NAMESPACE)
- --webhook-config-name={{ include "hookguard.fullname" . }}
{{- if .Values.webhook.certManager.enabled }}
- --cert-mode=external
- --cert-dir=/etc/hookguard/webhook-certs
{{- else }}
- --cert-mode=self
- --cert-secret={{ include "hookguard.webhookCertSecretName" . }}
{{- end }}
- --sidecar-image={{ include "hookguard.sidecarImage" . }}
- --sidecar-image-pull-policy={{ .Values.sidecar.image.pullPolicy }}
- --sidecar-store={{ include "hookguard.redisURL" . }}
{{- if eq .Values.redis.mode "cluster" }}
- --sidecar-store-mode=cluster
{{- end }}
{{- with .Values.redis.passwordSecret.name }}
- --sidecar-store-password-secret={{ . }}/{{ $.Values.redis.passwordSecret.key }}
{{- end }}
{{- $requests := .Values.sidecar.resources.requests | default dict }}
{{- $limits := .Values.sidecar.resources.limits | default dict }}
- --sidecar-cpu-request={{ $requests.cpu | default "" }}
- --sidecar-memory-request={{ $requests.memory | default "" }}
- --sidecar-cpu-limit={{ $limits.cpu | default "" }}
- --sidecar-memory-limit={{ $limits.memory | default "" }}
{{- with .Values.operator.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "hookguard.operatorVolumeMounts" -}}
volumeMounts:
  # readOnlyRootFilesystem: scratch space for anything the process writes.
  - name: tmp
    mountPath: /tmp
  {{- if .Values.webhook.certManager.enabled }}
  # cert-manager's serving certificate; the operator re-reads it when the kubelet swaps it.
  - name: webhook-certs
    mountPath: /etc/hookguard/webhook-certs
    readOnly: true
  {{- end }}
{{- end }}

{{- define "hookguard.operatorVolumes" -}}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 16Mi
  {{- if .Values.webhook.certManager.enabled }}
  - name: webhook-certs
    secret:
      secretName: {{ include "hookguard.webhookCertSecretName" . }}
      defaultMode: 0440
  {{- end }}
{{- end }}
