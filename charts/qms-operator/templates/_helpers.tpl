{{- define "qms-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "qms-operator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "qms-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "qms-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "qms-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* PromQL matchers of this release's operator series (monitoring.metricsSelector). */ -}}
{{- define "qms-operator.metricsSelector" -}}
{{- .Values.monitoring.metricsSelector | default (printf "job=%q" (include "qms-operator.fullname" .)) -}}
{{- end -}}

{{- /* PromQL matchers of the operator's container in cAdvisor / kube-state-metrics series. */ -}}
{{- define "qms-operator.containerSelector" -}}
{{- printf "namespace=%q,pod=~%q,container=\"operator\"" .Release.Namespace (printf "%s-[a-z0-9]+-[a-z0-9]+" (include "qms-operator.fullname" .)) -}}
{{- end -}}
