{{/*
Names and labels.
*/}}
{{- define "ociregistry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ociregistry.fullname" -}}
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

{{- define "ociregistry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ociregistry.labels" -}}
helm.sh/chart: {{ include "ociregistry.chart" . }}
{{ include "ociregistry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ociregistry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ociregistry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ociregistry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ociregistry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ociregistry.metricsServiceName" -}}
{{- printf "%s-metrics" (include "ociregistry.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ociregistry.tlsSecretName" -}}
{{- .Values.serverTls.secretName | default (printf "%s-tls" (include "ociregistry.fullname" .)) }}
{{- end }}

{{- define "ociregistry.claimName" -}}
{{- .Values.persistence.persistentVolumeClaim.existingClaimName | default (printf "%s-cache" (include "ociregistry.fullname" .)) }}
{{- end }}

{{/*
Paths the chart fixes in the pod.
*/}}
{{- define "ociregistry.configDir" -}}/var/ociregistry/config{{- end }}
{{- define "ociregistry.tlsDir" -}}/etc/pki/ociregistry{{- end }}
{{- define "ociregistry.preloadDir" -}}/var/ociregistry/preload{{- end }}

{{/*
The size of the cache volume as the chart sets it (the storage request of a claim it creates, an emptyDir
sizeLimit), else empty.
*/}}
{{- define "ociregistry.volumeQuantity" -}}
{{- $p := .Values.persistence }}
{{- $kind := include "ociregistry.persistenceKind" . }}
{{- if and (eq $kind "persistentVolumeClaim") (not $p.persistentVolumeClaim.existingClaimName) }}
{{- dig "resources" "requests" "storage" "" ($p.persistentVolumeClaim.newClaimSpec | default dict) | toString }}
{{- else if eq $kind "emptyDir" }}
{{- $p.emptyDir.sizeLimit | default "" | toString }}
{{- end }}
{{- end }}

{{/*
The size of the cache volume in bytes when the chart sets it, else empty; for the default maxCacheSize.
Kubernetes quantities: a number with k, M, G, T (powers of 1000) or Ki, Mi, Gi, Ti (powers of 1024).
*/}}
{{- define "ociregistry.volumeSize" -}}
{{- $q := include "ociregistry.volumeQuantity" . }}
{{- if $q }}
{{- $bytes := include "ociregistry.quantityBytes" (dict "v" $q) }}
{{- if not $bytes }}
{{- fail (printf "the cache volume's size %q is not a quantity the chart can read (e.g. 20Gi); set cache.maxSize" $q) }}
{{- end }}
{{- $bytes }}
{{- end }}
{{- end }}

{{/*
Seconds of shutdownGrace (the server's default is 60s) and the pod's terminationGracePeriodSeconds, which must
exceed it so that the kubelet does not kill the server while it finishes requests.
*/}}
{{- define "ociregistry.terminationGracePeriodSeconds" -}}
{{- $cfg := include "ociregistry.config" . | fromYaml }}
{{- $grace := include "ociregistry.seconds" (dict "path" "serverConfig.configuration.shutdownGrace" "v" ($cfg.shutdownGrace | default "60s")) | int }}
{{- $t := .Values.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $t }}
{{- add $grace 15 }}
{{- else if le (int $t) $grace }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be above shutdownGrace (%ds), or the kubelet kills the server before it has finished its requests" $t $grace) }}
{{- else }}
{{- int $t }}
{{- end }}
{{- end }}

{{/*
Where the cache lives. At most one of persistentVolumeClaim and hostPath; emptyDir otherwise.
*/}}
{{- define "ociregistry.persistenceKind" -}}
{{- $p := .Values.persistence }}
{{- if and $p.persistentVolumeClaim.enabled $p.hostPath.enabled }}
{{- fail "persistence: persistentVolumeClaim.enabled and hostPath.enabled are both true; the cache can live in one place only: enable one of them (or neither, for an emptyDir)" }}
{{- else if $p.persistentVolumeClaim.enabled }}persistentVolumeClaim
{{- else if $p.hostPath.enabled }}hostPath
{{- else }}emptyDir
{{- end }}
{{- end }}

{{/*
Deployment strategy. The server locks its cache directory, and a ReadWriteOnce volume attaches to one node:
with a cache on a claim or a hostPath a second pod must never start beside the first, so Recreate (or a
rolling update with maxSurge 0). An emptyDir cache is per pod: start the new pod first.
*/}}
{{- define "ociregistry.strategy" -}}
{{- $kind := include "ociregistry.persistenceKind" . }}
{{- $shared := ne $kind "emptyDir" }}
{{- $s := .Values.strategy | default dict }}
{{- if $s }}
{{- $type := $s.type | default "RollingUpdate" }}
{{- include "ociregistry.checkEnum" (dict "path" "strategy.type" "v" $type "allowed" (list "Recreate" "RollingUpdate")) }}
{{- if and $shared (eq $type "RollingUpdate") }}
{{- $surge := "25%" }}
{{- if and $s.rollingUpdate (hasKey $s.rollingUpdate "maxSurge") }}{{ $surge = toString $s.rollingUpdate.maxSurge }}{{ end }}
{{- if not (has $surge (list "0" "0%")) }}
{{- fail (printf "strategy: a RollingUpdate with maxSurge %s would start a second pod on the %s cache, which the first one holds; use type Recreate, or rollingUpdate.maxSurge 0" $surge $kind) }}
{{- end }}
{{- end }}
{{- toYaml $s }}
{{- else if $shared }}
type: Recreate
{{- else }}
type: RollingUpdate
rollingUpdate:
  maxSurge: 1
  maxUnavailable: 0
{{- end }}
{{- end }}

{{/*
Probe handlers: the health listener when there is one; else GET /v2/ on the main port (HTTPS with server TLS,
a TCP check when client certificates are required, since the kubelet has none).
*/}}
{{- define "ociregistry.probeHandler" -}}
{{- $cfg := .cfg }}
{{- if $cfg.health }}
httpGet:
  path: {{ .path }}
  port: health
{{- else if and $cfg.serverTlsConfig (eq ($cfg.serverTlsConfig.clientAuth | default "none") "verify") }}
tcpSocket:
  port: http
{{- else }}
httpGet:
  path: /v2/
  port: http
  {{- if $cfg.serverTlsConfig }}
  scheme: HTTPS
  {{- end }}
{{- end }}
{{- end }}
