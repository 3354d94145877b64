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

{{/* How a plant reaches its hub (the flags of `plantfed agent` and `plantfed reach-hub`, their files and the
     volumes those come from): one definition, so `helm test` checks exactly the credentials the agent uses. */}}
{{- define "plantfed.hubFlags" -}}
- --plant={{ .Values.plant.id }}
- --hub-kubeconfig=/etc/plantfed/hub/kubeconfig
- --hub-namespace={{ .Values.hub.namespace }}
- --exchange={{ .Values.hub.exchange }}
- --token-file=/etc/plantfed/exchange/token
{{- if .Values.hub.tls }}
- --ca-file=/etc/plantfed/exchange/ca.crt
{{- end }}
{{- if .Values.hub.clientCertSecret }}
- --client-cert=/etc/plantfed/client-tls/tls.crt
- --client-key=/etc/plantfed/client-tls/tls.key
{{- end }}
{{- end -}}

{{- define "plantfed.hubMounts" -}}
- name: hub-kubeconfig
  mountPath: /etc/plantfed/hub
  readOnly: true
- name: exchange
  mountPath: /etc/plantfed/exchange
  readOnly: true
{{- if .Values.hub.clientCertSecret }}
- name: client-tls
  mountPath: /etc/plantfed/client-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "plantfed.hubVolumes" -}}
# One Secret, split so each path holds only what its flag names.
- name: hub-kubeconfig
  secret:
    secretName: {{ .Values.hub.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.hub.secretKeys.kubeconfig }}
        path: kubeconfig
- name: exchange
  secret:
    secretName: {{ .Values.hub.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.hub.secretKeys.token }}
        path: token
      {{- if .Values.hub.tls }}
      - key: {{ .Values.hub.secretKeys.caCert }}
        path: ca.crt
      {{- end }}
{{- with .Values.hub.clientCertSecret }}
- name: client-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end -}}
