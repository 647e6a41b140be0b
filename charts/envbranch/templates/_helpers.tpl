{{- define "envbranch.selectorLabels" -}}
app.kubernetes.io/name: envbranch
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "envbranch.labels" -}}
{{ include "envbranch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The operator's ClusterRole (and Roles): envbranch-operator for the release named envbranch. */}}
{{- define "envbranch.operatorRole" -}}
{{ .Release.Name }}-operator
{{- end }}

{{- define "envbranch.serviceAccountName" -}}
{{ .Values.serviceAccount.name }}
{{- end }}

{{/* The name of the Kopf peering object; the operator's --peering-name. */}}
{{- define "envbranch.peeringName" -}}
envbranch
{{- end }}
