{{/*
Object names are "<prefix>-<component>" with prefix "plantfed" by default: plants, the operator
and docs address the exchange as plantfed-exchange.<namespace>.svc and its token Secret as
plantfed-plant-tokens, so names must not depend on the release name. One hub per namespace.
*/}}
{{- define "plantfed.prefix" -}}
{{- .Values.fullnameOverride | default "plantfed" | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/*
The CRDs' API group and version. Python's single definition is plantfed.contract.naming (GROUP, VERSION);
a chart cannot import it, so this is the chart's one spelling and tests/charts/test_chart_api_group.py
checks every rendered group and version against the contract's.
*/}}
{{- define "plantfed.apiGroup" -}}plantfed.io{{- end -}}
{{- define "plantfed.apiVersion" -}}{{ include "plantfed.apiGroup" . }}/v1alpha1{{- end -}}

{{- define "plantfed.name" -}}
{{- printf "%s-%s" (include "plantfed.prefix" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "plantfed.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: plantfed
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
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

{{- define "plantfed.exchangeService" -}}
{{- include "plantfed.name" (dict "root" . "component" "exchange") -}}
{{- end -}}

{{/* host:port the operator and the helm test use; in-cluster, so the cluster DNS name. */}}
{{- define "plantfed.exchangeAddress" -}}
{{- printf "%s.%s.svc:%d" (include "plantfed.exchangeService" .) .Release.Namespace (int .Values.exchange.service.port) -}}
{{- end -}}

{{- define "plantfed.tlsSecret" -}}
{{- include "plantfed.name" (dict "root" . "component" "exchange-tls") -}}
{{- end -}}

{{- define "plantfed.caSecret" -}}
{{- include "plantfed.name" (dict "root" . "component" "ca") -}}
{{- end -}}

{{- define "plantfed.adminTokenSecret" -}}
{{- .Values.adminToken.existingSecret | default (include "plantfed.name" (dict "root" . "component" "admin-token")) -}}
{{- end -}}

{{- define "plantfed.plantTokensSecret" -}}
{{- .Values.plantTokens.existingSecret | default (include "plantfed.name" (dict "root" . "component" "plant-tokens")) -}}
{{- end -}}

{{- define "plantfed.storeClaim" -}}
{{- .Values.exchange.store.existingClaim | default (include "plantfed.name" (dict "root" . "component" "store")) -}}
{{- end -}}

{{- define "plantfed.aggregationServiceAccount" -}}
{{- include "plantfed.name" (dict "root" . "component" "aggregate") -}}
{{- end -}}

{{- define "plantfed.operatorServiceAccount" -}}
{{- include "plantfed.name" (dict "root" . "component" "operator") -}}
{{- end -}}

{{/*
Names the exchange certificate is valid for: the Service's in-cluster names, localhost (so the
readiness probe can verify the certificate it dials on 127.0.0.1), and the external names plants
dial (tls.extraDnsNames). Rendered as JSON so callers can fromJsonArray it.
*/}}
{{- define "plantfed.exchangeDnsNames" -}}
{{- $svc := include "plantfed.exchangeService" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) "localhost" -}}
{{- concat $names .Values.tls.extraDnsNames | uniq | toJson -}}
{{- end -}}

{{- define "plantfed.exchangeIPs" -}}
{{- concat (list "127.0.0.1") .Values.tls.extraIPs | uniq | toJson -}}
{{- end -}}

{{/* Pod-level pieces every hub pod shares. */}}
{{- define "plantfed.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}
