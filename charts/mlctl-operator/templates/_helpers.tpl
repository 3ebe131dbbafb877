{{- define "mlctl-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mlctl-operator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mlctl-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The metrics Service's own labels: what a ServiceMonitor selects it by. */}}
{{- define "mlctl-operator.metricsServiceSelectorLabels" -}}
{{ include "mlctl-operator.selectorLabels" . }}
app.kubernetes.io/component: metrics
{{- end -}}

{{- define "mlctl-operator.serviceAccountName" -}}
{{- default (include "mlctl-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The rules the operator needs on the objects it reads and writes. */}}
{{- define "mlctl-operator.rules" -}}
- apiGroups: ["mlctl.io"]
  resources: ["rankingmodels", "featurepipelines", "analysistemplates"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["mlctl.io"]
  resources: ["rankingmodels/status", "featurepipelines/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs", "cronjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["sparkoperator.k8s.io"]
  resources: ["sparkapplications"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}


{{/* --analysis-allow: analysis.allow plus the host of analysis.prometheus. */}}
{{- define "mlctl-operator.analysisAllow" -}}
{{- $allow := .Values.analysis.allow | default list -}}
{{- with .Values.analysis.prometheus -}}
{{- $host := regexReplaceAll ":[0-9]+$" (urlParse .).host "" | trimPrefix "[" | trimSuffix "]" -}}
{{- if not $host -}}
{{- fail (printf "analysis.prometheus %q is not a URL such as http://prometheus.monitoring:9090" .) -}}
{{- end -}}
{{- $allow = append $allow $host -}}
{{- end -}}
{{- if not $allow -}}
{{- fail "analysis.allow is empty: list the hosts analysis may read, e.g. [in-cluster]" -}}
{{- end -}}
{{- join "," $allow -}}
{{- end -}}
