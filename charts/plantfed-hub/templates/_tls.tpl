{{/*
TLS pieces shared by tls.yaml (Helm-generated), certificate.yaml (cert-manager) and the pods that
present or check certificates.
*/}}

{{/* "true" when the exchange requires client certificates (mutual TLS), else empty. */}}
{{- define "plantfed.mutualTLS" -}}
{{- if and .Values.tls.enabled .Values.tls.mutual.enabled }}true{{ end -}}
{{- end -}}

{{- define "plantfed.plantClientSecret" -}}
{{- printf "plantfed-plant-%s-tls" . -}}
{{- end -}}

{{- define "plantfed.operatorClientSecret" -}}
{{- include "plantfed.name" (dict "root" . "component" "operator-tls") -}}
{{- end -}}

{{- define "plantfed.healthcheckClientSecret" -}}
{{- include "plantfed.name" (dict "root" . "component" "healthcheck-tls") -}}
{{- end -}}

{{/*
Who gets a client certificate under mutual TLS, as a JSON list of {secret, commonName, plant}. The
exchange reads a certificate's name from its SAN URI spiffe://plantfed/plant/<plant>, else its CN:
- the operator: CN plantfed:admin, the only name the exchange accepts the admin token with;
- the `helm test` pod: CN plantfed:healthcheck, neither a plant nor the admin, so with no token it
  reaches the health service and nothing else;
- every plant: its id, the plant its exchange token must belong to.
The aggregation and init Jobs never call the exchange (they only touch the store volume): none for them.
*/}}
{{- define "plantfed.clientIdentities" -}}
{{- $out := list (dict "secret" (include "plantfed.operatorClientSecret" .) "commonName" "plantfed:admin" "plant" "") -}}
{{- if .Values.tests.enabled -}}
{{- $out = append $out (dict "secret" (include "plantfed.healthcheckClientSecret" .) "commonName" "plantfed:healthcheck" "plant" "") -}}
{{- end -}}
{{- range .Values.plants -}}
{{- $out = append $out (dict "secret" (include "plantfed.plantClientSecret" .name) "commonName" .name "plant" .name) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
The Helm-generated CA and server certificate, as JSON {caCert, caKey (PEM), crt, key (base64, as in the
Secret), sanDigest}. Both are looked up on upgrade and reused, so an upgrade never rotates them behind
the plants' backs; the server certificate is re-signed by the same CA only when its names change
(plants keep trusting ca.crt). `helm template` has no cluster to look in and so makes fresh ones each
time. tls.yaml renders it (and signs the client certificates with this CA); the exchange's checksum
annotation hashes it, so the pod rolls when its certificate changes, not when a plant is added.
*/}}
{{- define "plantfed.helmServerPki" -}}
{{- $ns := .Release.Namespace }}
{{- $days := int .Values.tls.validityDays }}
{{- $dns := include "plantfed.exchangeDnsNames" . | fromJsonArray }}
{{- $ips := include "plantfed.exchangeIPs" . | fromJsonArray }}
{{- $sanDigest := dict "dns" $dns "ips" $ips | toJson | sha256sum | trunc 16 }}
{{- $ca := dict }}
{{- $oldCa := lookup "v1" "Secret" $ns (include "plantfed.caSecret" .) }}
{{- if and $oldCa $oldCa.data (hasKey $oldCa.data "tls.crt") (hasKey $oldCa.data "tls.key") }}
{{- $ca = buildCustomCert (index $oldCa.data "tls.crt") (index $oldCa.data "tls.key") }}
{{- else }}
{{- $ca = genCA "plantfed-ca" $days }}
{{- end }}
{{- $crt := "" }}
{{- $key := "" }}
{{- $old := lookup "v1" "Secret" $ns (include "plantfed.tlsSecret" .) }}
{{- $oldDigest := "" }}
{{- if $old }}{{ $oldDigest = dig "metadata" "annotations" "plantfed.io/san-digest" "" $old }}{{ end }}
{{- if and $old $old.data (eq $oldDigest $sanDigest) (eq (index $old.data "ca.crt" | default "") ($ca.Cert | b64enc)) }}
{{- $crt = index $old.data "tls.crt" }}
{{- $key = index $old.data "tls.key" }}
{{- else }}
{{- $cert := genSignedCert (first $dns) $ips $dns $days $ca }}
{{- $crt = $cert.Cert | b64enc }}
{{- $key = $cert.Key | b64enc }}
{{- end }}
{{- dict "caCert" $ca.Cert "caKey" $ca.Key "crt" $crt "key" $key "sanDigest" $sanDigest | toJson -}}
{{- end -}}

{{/* The cert-manager issuer of every certificate: tls.certManager.issuerRef, else the chart's own CA Issuer. */}}
{{- define "plantfed.certIssuer" -}}
{{- $ref := .Values.tls.certManager.issuerRef -}}
{{- if get $ref "name" -}}
{{- dict "name" (get $ref "name") "kind" (get $ref "kind" | default "Issuer") "group" (get $ref "group" | default "cert-manager.io") | toJson -}}
{{- else -}}
{{- dict "name" (include "plantfed.caSecret" .) "kind" "Issuer" "group" "cert-manager.io" | toJson -}}
{{- end -}}
{{- end -}}
