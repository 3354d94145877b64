{{/* Object names are "plantfed-<component>": one plant agent per namespace. */}}
{{- define "plantfed.name" -}}
{{- printf "plantfed-%s" .component -}}
{{- end -}}

{{- define "plantfed.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: plantfed
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
plantfed.io/plant: {{ .Values.plant.id | quote }}
{{- end -}}

{{- define "plantfed.selectorLabels" -}}
app.kubernetes.io/name: plantfed-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "plantfed.componentLabels" -}}
{{ include "plantfed.labels" .root }}
{{ include "plantfed.selectorLabels" . }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "plantfed.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository ($img.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "plantfed.cacheClaim" -}}
{{- .Values.cache.existingClaim | default "plantfed-cache" -}}
{{- end -}}

{{/* "k=v,k2=v2" for --node-selector; Go templates range over maps in key order, so it is stable. */}}
{{- define "plantfed.nodeSelectorArg" -}}
{{- $pairs := list -}}
{{- range $k, $v := .Values.training.nodeSelector -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
