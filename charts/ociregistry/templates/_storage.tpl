{{/*
Scale-out: where the cache lives (storage.type), how many replicas may run, and the config's storage and cluster
sections. With `filesystem` (the default) the cache is imagePath on the cache volume and one server owns it, so
one replica. With `s3` the blobs live in a bucket every replica shares, imagePath is each replica's local tier in
front of it, and the replicas find each other through a headless Service to fetch blobs from one another.
*/}}

{{/* storage.type, checked: filesystem or s3. */}}
{{- define "ociregistry.storageType" -}}
{{- $t := (.Values.storage | default dict).type | default "filesystem" }}
{{- include "ociregistry.checkEnum" (dict "path" "storage.type" "v" $t "allowed" (list "filesystem" "s3")) }}
{{- $t }}
{{- end }}

{{/*
The Deployment's replica count, checked. More than one needs the shared bucket (with filesystem storage every
replica would have a cache of its own, and a shared volume is locked by one server), and a per-pod local tier:
a Deployment's pods all mount the same claim or node directory, which one server locks.
*/}}
{{- define "ociregistry.replicas" -}}
{{- $n := .Values.replicaCount }}
{{- if kindIs "invalid" $n }}{{ $n = 1 }}{{ end }}
{{- if not (regexMatch "^[0-9]+$" (toString $n)) }}
{{- fail (printf "replicaCount: %v is not a whole number" $n) }}
{{- end }}
{{- $n = int $n }}
{{- if gt $n 1 }}
{{- if ne (include "ociregistry.storageType" .) "s3" }}
{{- fail (printf "replicaCount %d needs storage.type s3: with filesystem storage each replica would keep a cache of its own, and a shared volume is locked by one server" $n) }}
{{- end }}
{{- $kind := include "ociregistry.persistenceKind" . }}
{{- if ne $kind "emptyDir" }}
{{- fail (printf "replicaCount %d with persistence.%s: every pod of the Deployment would mount the same %s, which one server locks; the local tier in front of the bucket is per pod: use the emptyDir (persistence.emptyDir.sizeLimit)" $n $kind $kind) }}
{{- end }}
{{- end }}
{{- $n }}
{{- end }}

{{/* The full name shortened to leave room for "-peers": a Service name is one DNS label (63 characters). */}}
{{- define "ociregistry.peersServiceName" -}}
{{- printf "%s-peers" (include "ociregistry.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{- define "ociregistry.s3SecretName" -}}
{{- .Values.storage.s3.existingSecret | default (printf "%s-s3" (include "ociregistry.fullname" .)) }}
{{- end }}

{{/* Where the S3 credentials Secret is mounted; its keys become the files access-key-id and secret-access-key. */}}
{{- define "ociregistry.s3CredentialsDir" -}}/var/run/ociregistry/s3{{- end }}

{{/*
Where the S3 credentials come from, checked: `secret` (storage.s3.existingSecret, or accessKeyId and
secretAccessKey from which the chart makes a Secret), mounted as files; or `env`, when no Secret is given and `env`
sets AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, which the server reads instead.
*/}}
{{- define "ociregistry.s3Credentials" -}}
{{- $s3 := .Values.storage.s3 }}
{{- $inline := or $s3.accessKeyId $s3.secretAccessKey }}
{{- if and $s3.existingSecret $inline }}
{{- fail "storage.s3: set existingSecret, or accessKeyId and secretAccessKey, not both" }}
{{- end }}
{{- if $inline }}
{{- if not (and $s3.accessKeyId $s3.secretAccessKey) }}
{{- fail "storage.s3: accessKeyId and secretAccessKey go together (or name a Secret in existingSecret)" }}
{{- end }}
{{- end }}
{{- if or $s3.existingSecret $inline }}
{{- if not (and $s3.accessKeyIdKey $s3.secretAccessKeyKey) }}
{{- fail "storage.s3.accessKeyIdKey and storage.s3.secretAccessKeyKey must name the Secret's keys" }}
{{- end }}
{{- print "secret" }}
{{- else }}
{{- $names := list }}
{{- range .Values.env }}{{ $names = append $names .name }}{{ end }}
{{- if not (and (has "AWS_ACCESS_KEY_ID" $names) (has "AWS_SECRET_ACCESS_KEY" $names)) }}
{{- fail "storage.type s3 needs credentials: storage.s3.existingSecret (preferred), or storage.s3.accessKeyId and secretAccessKey, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in env" }}
{{- end }}
{{- print "env" }}
{{- end }}
{{- end }}

{{/*
A Kubernetes quantity (a number with k, M, G, T or Ki, Mi, Gi, Ti) in bytes; empty when .v is not one.
*/}}
{{- define "ociregistry.quantityBytes" -}}
{{- $q := toString .v }}
{{- if regexMatch "^[0-9]+(k|M|G|T|Ki|Mi|Gi|Ti)?$" $q }}
{{- $n := int64 (regexFind "^[0-9]+" $q) }}
{{- $unit := regexReplaceAll "^[0-9]+" $q "" }}
{{- $f := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- mul $n (get $f $unit) }}
{{- end }}
{{- end }}

{{/*
The config's `storage` and `cluster` sections (YAML) for storage.type s3, empty for filesystem. Called from
ociregistry.config with .root (the chart's context) and .cfg (the config so far, for its port and TLS).

With s3 the cluster section is rendered whatever replicaCount is: the peers are whatever the headless Service
resolves to, so scaling (replicaCount, kubectl scale) leaves the config, and so the running pods, alone. The
server takes its own address from POD_IP, which the Deployment sets.
*/}}
{{- define "ociregistry.storageConfig" -}}
{{- $root := .root }}
{{- if eq (include "ociregistry.storageType" $root) "s3" }}
{{- $s3 := $root.Values.storage.s3 }}
{{- if not $s3.endpoint }}
{{- fail "storage.type s3 needs storage.s3.endpoint, the S3 API's base URL (e.g. http://garage.storage:3900, https://s3.eu-west-1.amazonaws.com)" }}
{{- end }}
{{- if not (regexMatch "^https?://[^/]+" (toString $s3.endpoint)) }}
{{- fail (printf "storage.s3.endpoint: %q must be a URL starting with http:// or https://" $s3.endpoint) }}
{{- end }}
{{- if not $s3.bucket }}
{{- fail "storage.type s3 needs storage.s3.bucket, the bucket every replica shares" }}
{{- end }}
{{- if not $s3.localCacheSize }}
{{- fail "storage.type s3 needs storage.s3.localCacheSize, the cap of each replica's local tier (e.g. 10Gi)" }}
{{- end }}
{{- /* The local tier must leave room on a volume whose size the chart knows, as maxCacheSize does (90%). */}}
{{- $local := include "ociregistry.quantityBytes" (dict "v" $s3.localCacheSize) }}
{{- $volumeQ := include "ociregistry.volumeQuantity" $root }}
{{- $volume := include "ociregistry.quantityBytes" (dict "v" $volumeQ) }}
{{- if and $local $volume (gt (mul (int64 $local) 10) (mul (int64 $volume) 9)) }}
{{- fail (printf "storage.s3.localCacheSize (%v) must be at most 90%% of the cache volume it lives on (%s): leave room for downloads in progress (a full emptyDir gets the pod evicted)" $s3.localCacheSize $volumeQ) }}
{{- end }}
{{- $out := dict "endpoint" (toString $s3.endpoint) "bucket" (toString $s3.bucket) "pathStyle" (eq (toString $s3.pathStyle) "true") "localCacheSize" (toString $s3.localCacheSize) }}
{{- with $s3.region }}{{ $_ := set $out "region" (toString .) }}{{ end }}
{{- with $s3.prefix }}{{ $_ := set $out "prefix" (toString .) }}{{ end }}
{{- if eq (include "ociregistry.s3Credentials" $root) "secret" }}
{{- $dir := include "ociregistry.s3CredentialsDir" $root }}
{{- $_ := set $out "accessKeyIdFile" (printf "%s/access-key-id" $dir) }}
{{- $_ := set $out "secretAccessKeyFile" (printf "%s/secret-access-key" $dir) }}
{{- end }}
{{- $domain := $root.Values.clusterDomain | default "cluster.local" }}
{{- $cluster := dict "dns" (printf "%s.%s.svc.%s" (include "ociregistry.peersServiceName" $root) $root.Release.Namespace $domain) "port" (int .cfg.port) "scheme" (ternary "https" "http" (hasKey .cfg "serverTlsConfig")) }}
{{- toYaml (dict "storage" (dict "type" "s3" "s3" $out) "cluster" $cluster) }}
{{- end }}
{{- end }}
