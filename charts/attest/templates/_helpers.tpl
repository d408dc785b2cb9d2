{{/* Names, labels and the pieces several templates share. */}}

{{- define "attest.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "attest.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "attest.selectorLabels" -}}
app.kubernetes.io/name: {{ include "attest.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "attest.labels" -}}
{{ include "attest.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: attest
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "attest.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "attest.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image: repository:tag, or repository@digest when a digest is given. */}}
{{- define "attest.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Secret names: the user's own where given, else the chart's. */}}
{{- define "attest.tlsSecret" -}}
{{- if eq .Values.tls.source "existing" -}}{{ .Values.tls.existingSecret }}{{- else -}}{{ include "attest.fullname" . }}-tls{{- end -}}
{{- end -}}
{{- define "attest.clientCaSecret" -}}
{{- default (printf "%s-client-ca" (include "attest.fullname" .)) .Values.clientAuth.existingSecret -}}
{{- end -}}
{{- define "attest.apiserverClientSecret" -}}
{{- include "attest.fullname" . }}-apiserver-client
{{- end -}}
{{- define "attest.tokenSecret" -}}
{{- default (printf "%s-ops-token" (include "attest.fullname" .)) .Values.ops.tokenSecret -}}
{{- end -}}
{{- define "attest.keysSecret" -}}
{{- default (printf "%s-keys" (include "attest.fullname" .)) .Values.keys.existingSecret -}}
{{- end -}}
{{- define "attest.rootsSecret" -}}
{{- default (printf "%s-trusted-roots" (include "attest.fullname" .)) .Values.trustedRoots.existingSecret -}}
{{- end -}}
{{- define "attest.policiesConfigMap" -}}
{{- default (printf "%s-policies" (include "attest.fullname" .)) .Values.policies.existingConfigMap -}}
{{- end -}}
{{- define "attest.databaseSecret" -}}
{{- default (printf "%s-database" (include "attest.fullname" .)) .Values.decisions.database.existingSecret -}}
{{- end -}}
{{- define "attest.signingSecret" -}}
{{- default (printf "%s-signing-key" (include "attest.fullname" .)) .Values.decisions.signingKey.existingSecret -}}
{{- end -}}

{{- define "attest.hasKeys" -}}{{ if or .Values.keys.files .Values.keys.existingSecret }}true{{ end }}{{- end -}}
{{- define "attest.hasRoots" -}}{{ if or .Values.trustedRoots.files .Values.trustedRoots.existingSecret }}true{{ end }}{{- end -}}
{{- define "attest.hasPolicies" -}}{{ if or .Values.policies.files .Values.policies.existingConfigMap }}true{{ end }}{{- end -}}
{{- define "attest.hasDatabase" -}}{{ if or .Values.decisions.database.url .Values.decisions.database.existingSecret }}true{{ end }}{{- end -}}
{{- define "attest.signs" -}}{{ if and .Values.decisions.record .Values.decisions.signingKey.enabled }}true{{ end }}{{- end -}}

{{/* The DNS names of the webhook and ops Services, for the serving certificate. */}}
{{- define "attest.dnsNames" -}}
{{- $names := list -}}
{{- range $service := list (include "attest.fullname" .) (printf "%s-ops" (include "attest.fullname" .)) -}}
{{- $names = concat $names (list $service (printf "%s.%s" $service $.Release.Namespace) (printf "%s.%s.svc" $service $.Release.Namespace) (printf "%s.%s.svc.cluster.local" $service $.Release.Namespace)) -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/*
The admission config as written to config.yaml: .Values.config plus what other values
imply (the policy bundle, registry credentials, digest pinning), unless set there.
*/}}
{{- define "attest.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if include "attest.hasPolicies" . -}}
{{- $policy := deepCopy (default dict $config.policy) -}}
{{- if not $policy.bundle -}}
{{- $_ := set $policy "bundle" "/etc/attest/policies" -}}
{{- end -}}
{{- $_ := set $config "policy" $policy -}}
{{- end -}}
{{- if .Values.registryAuth.existingSecret -}}
{{- $auth := default list $config.registryAuth -}}
{{- $_ := set $config "registryAuth" (append $auth "/etc/attest/registry/.dockerconfigjson") -}}
{{- end -}}
{{- if and .Values.mutatingWebhook.enabled (not (hasKey $config "pinDigests")) -}}
{{- $_ := set $config "pinDigests" true -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
Fail rendering, naming the value, when the config names a key or trusted root under a
directory the chart mounts but no such file is given, or a required value is missing.
*/}}
{{- define "attest.validate" -}}
{{- $keys := .Values.keys -}}
{{- $roots := .Values.trustedRoots -}}
{{- range $i, $policy := (default list .Values.config.imagePolicies) -}}
{{- range $j, $authority := (default list $policy.authorities) -}}
{{- $where := printf "config.imagePolicies[%d].authorities[%d]" $i $j -}}
{{- $paths := dict -}}
{{- with $authority.key }}{{ with .path }}{{ $_ := set $paths "key.path" . }}{{ end }}{{ end -}}
{{- with $authority.ctlog }}{{ with .trustedRoot }}{{ $_ := set $paths "ctlog.trustedRoot" . }}{{ end }}{{ end -}}
{{- with $authority.keyless }}{{ with .trustedRoot }}{{ $_ := set $paths "keyless.trustedRoot" . }}{{ end }}{{ end -}}
{{- range $field, $path := $paths -}}
{{- if hasPrefix "/etc/attest/keys/" $path -}}
{{- if not (or $keys.existingSecret (hasKey $keys.files (trimPrefix "/etc/attest/keys/" $path))) -}}
{{- fail (printf "%s.%s %s: no such file in keys.files (give the public key there, e.g. --set-file 'keys.files.%s=cosign.pub', or set keys.existingSecret)" $where $field $path (trimPrefix "/etc/attest/keys/" $path | replace "." "\\.")) -}}
{{- end -}}
{{- else if hasPrefix "/etc/attest/roots/" $path -}}
{{- if not (or $roots.existingSecret (hasKey $roots.files (trimPrefix "/etc/attest/roots/" $path))) -}}
{{- fail (printf "%s.%s %s: no such file in trustedRoots.files (or set trustedRoots.existingSecret)" $where $field $path) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if eq .Values.tls.source "existing" -}}
{{- if not .Values.tls.existingSecret -}}{{ fail "tls.source existing needs tls.existingSecret (a kubernetes.io/tls Secret with ca.crt)" }}{{- end -}}
{{- if not .Values.tls.caBundle -}}{{ fail "tls.source existing needs tls.caBundle (PEM of the CA that issued tls.existingSecret)" }}{{- end -}}
{{- if and .Values.clientAuth.enabled (not .Values.clientAuth.existingSecret) -}}{{ fail "tls.source existing with clientAuth.enabled needs clientAuth.existingSecret (ca.crt of the API server's client certificate CA)" }}{{- end -}}
{{- end -}}
{{- if and .Values.decisions.database.url .Values.decisions.database.existingSecret -}}
{{- fail "decisions.database: give url or existingSecret, not both" -}}
{{- end -}}
{{- end -}}
