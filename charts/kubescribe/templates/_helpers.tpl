{{/* The chart name, or nameOverride. */}}
{{- define "kubescribe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object's name: fullnameOverride, else <release>-<chart> (the release alone when it already contains the chart name). */}}
{{- define "kubescribe.fullname" -}}
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

{{/* Labels of every object. */}}
{{- define "kubescribe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "kubescribe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component: call with (dict "root" $ "component" "proxy"). */}}
{{- define "kubescribe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubescribe.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every label of one component's objects: call with (dict "root" $ "component" "proxy"). */}}
{{- define "kubescribe.componentLabels" -}}
{{ include "kubescribe.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Object names. */}}
{{- define "kubescribe.proxy.fullname" -}}
{{- printf "%s-proxy" (include "kubescribe.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "kubescribe.recorder.fullname" -}}
{{- printf "%s-recorder" (include "kubescribe.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* A Secret's name: the value given, else <fullname>-<suffix>: call with (list $ .Values.x.secretName "suffix"). */}}
{{- define "kubescribe.secretName" -}}
{{- $root := index . 0 }}
{{- $given := index . 1 }}
{{- $suffix := index . 2 }}
{{- default (printf "%s-%s" (include "kubescribe.fullname" $root) $suffix) $given }}
{{- end }}

{{/* An image reference: call with (list $ .Values.proxy.image); the tag defaults to appVersion. */}}
{{- define "kubescribe.image" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}

{{/* The pod security context of every pod: non-root 65532, RuntimeDefault seccomp. */}}
{{- define "kubescribe.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The security context of every container: no privilege escalation, no capabilities, read-only root. */}}
{{- define "kubescribe.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* imagePullSecrets, when any. */}}
{{- define "kubescribe.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The operator's object names. */}}
{{- define "kubescribe.operator.fullname" -}}
{{- printf "%s-operator" (include "kubescribe.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
