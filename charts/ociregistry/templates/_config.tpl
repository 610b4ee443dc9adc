{{/*
The server's config file (registry-config.yaml): ociregistry.config renders serverConfig.configuration
checked against the key lists of _keys.tpl (generated from the server's schema), with the chart's settings merged
in; the checks it uses (keys, enums, durations) and the Go server's keys it leaves out (ociregistry.droppedKeys).
*/}}

{{/*
Fails unless every key of map .m is in the space-separated list .keys (one of the ociregistry.keys.* lists of
_keys.tpl, generated from the server's schema); .path names the map in the message.
*/}}
{{- define "ociregistry.checkKeys" -}}
{{- $allowed := splitList " " .keys }}
{{- if not (kindIs "map" .m) }}
{{- fail (printf "%s must be a map (keys: %s)" .path (join ", " $allowed)) }}
{{- end }}
{{- range $k, $v := .m }}
{{- if not (has $k $allowed) }}
{{- fail (printf "%s.%s: the server has no such key (it has: %s)" $.path $k (join ", " $allowed)) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ociregistry.checkEnum" -}}
{{- if and (not (kindIs "invalid" .v)) (not (has (toString .v) .allowed)) }}
{{- fail (printf "%s: %v is not one of %s" .path .v (join ", " .allowed)) }}
{{- end }}
{{- end }}

{{/*
A duration of the server's config as whole seconds, rounded up: a number is milliseconds (as for
pullTimeout), a string takes units ("60s", "1m30s", "2min", "500ms").
*/}}
{{- define "ociregistry.seconds" -}}
{{- $ms := 0 }}
{{- if kindIs "string" .v }}
{{- $s := lower (nospace .v) }}
{{- if regexMatch "^[0-9]+$" $s }}
{{- $ms = int64 $s }}
{{- else if regexMatch "^([0-9]+(ms|msec|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days))+$" $s }}
{{- range regexFindAll "[0-9]+[a-z]+" $s -1 }}
{{- $n := int64 (regexFind "^[0-9]+" .) }}
{{- $unit := regexReplaceAll "^[0-9]+" . "" }}
{{- if has $unit (list "ms" "msec") }}{{ $ms = add $ms $n }}
{{- else if has $unit (list "s" "sec" "secs" "second" "seconds") }}{{ $ms = add $ms (mul $n 1000) }}
{{- else if has $unit (list "m" "min" "mins" "minute" "minutes") }}{{ $ms = add $ms (mul $n 60000) }}
{{- else if has $unit (list "h" "hr" "hrs" "hour" "hours") }}{{ $ms = add $ms (mul $n 3600000) }}
{{- else }}{{ $ms = add $ms (mul $n 86400000) }}
{{- end }}
{{- end }}
{{- else }}
{{- fail (printf "%s: cannot read %q as a duration (e.g. 60s, 2m, 1m30s, or milliseconds)" .path .v) }}
{{- end }}
{{- else }}
{{- $ms = int64 .v }}
{{- end }}
{{- div (add $ms 999) 1000 }}
{{- end }}

{{/*
The server's config file (YAML): serverConfig.configuration restricted to the server's keys and checked, with
the chart's settings merged in: imagePath and port made explicit, the health and metrics ports, and
serverTlsConfig when serverTls is enabled. Templates that need a value use `include ... | fromYaml`.
*/}}
{{- define "ociregistry.config" -}}
{{- $in := .Values.serverConfig.configuration | default dict }}
{{- if not (kindIs "map" $in) }}
{{- fail "serverConfig.configuration must be a map of the server's config keys" }}
{{- end }}
{{- $top := splitList " " (include "ociregistry.keys.top" .) }}
{{- $goOnly := splitList " " (include "ociregistry.keys.goOnly" .) }}
{{- /* storage and cluster come from the chart's values: they also mount the credentials and make the Services */}}
{{- range $key := splitList " " (include "ociregistry.keys.fromValues" .) }}
{{- if hasKey $in $key }}
{{- fail (printf "serverConfig.configuration.%s: set the chart's storage values (storage.type, storage.s3.*, replicaCount, clusterDomain) instead; the chart renders storage and cluster from them" $key) }}
{{- end }}
{{- end }}
{{- $cfg := dict }}
{{- range $k, $v := $in }}
{{- if has $k $top }}
{{- if not (or (kindIs "invalid" $v) (and (kindIs "string" $v) (eq $v ""))) }}
{{- $_ := set $cfg $k (deepCopy $v) }}
{{- end }}
{{- else if not (has $k $goOnly) }}
{{- fail (printf "serverConfig.configuration.%s: the server has no such key (it has: %s)" $k (join ", " $top)) }}
{{- end }}
{{- end }}

{{- $_ := set $cfg "imagePath" ($cfg.imagePath | default "/var/lib/ociregistry") }}
{{- if not (hasPrefix "/" $cfg.imagePath) }}
{{- fail (printf "serverConfig.configuration.imagePath: %q must be an absolute path" $cfg.imagePath) }}
{{- end }}
{{- $_ := set $cfg "port" (int ($cfg.port | default 8080)) }}
{{- include "ociregistry.checkEnum" (dict "path" "serverConfig.configuration.logLevel" "v" (get $cfg "logLevel" | default nil) "allowed" (list "debug" "info" "warn" "warning" "error" "DEBUG" "INFO" "WARN" "WARNING" "ERROR")) }}
{{- include "ociregistry.checkEnum" (dict "path" "serverConfig.configuration.logFormat" "v" (get $cfg "logFormat" | default nil) "allowed" (list "text" "json")) }}
{{- include "ociregistry.checkEnum" (dict "path" "serverConfig.configuration.upstreamPolicy" "v" (get $cfg "upstreamPolicy" | default nil) "allowed" (list "public" "listed" "any")) }}
{{- range $key := list "pullTimeout" "connectTimeout" "idleTimeout" "clientIdleTimeout" "shutdownGrace" }}
{{- if hasKey $cfg $key }}
{{- $_ := include "ociregistry.seconds" (dict "path" (printf "serverConfig.configuration.%s" $key) "v" (get $cfg $key)) }}
{{- end }}
{{- end }}

{{- /* Upstream registries */}}
{{- if hasKey $cfg "registries" }}
{{- if not (kindIs "slice" $cfg.registries) }}
{{- fail "serverConfig.configuration.registries must be a list" }}
{{- end }}
{{- range $i, $r := $cfg.registries }}
{{- $path := printf "serverConfig.configuration.registries[%d]" $i }}
{{- include "ociregistry.checkKeys" (dict "path" $path "m" $r "keys" (include "ociregistry.keys.registry" $)) }}
{{- if not $r.name }}
{{- fail (printf "%s.name is required (the namespace, host[:port], e.g. docker.io)" $path) }}
{{- end }}
{{- include "ociregistry.checkEnum" (dict "path" (printf "%s.scheme" $path) "v" ($r.scheme | default nil) "allowed" (list "http" "https")) }}
{{- with $r.auth }}
{{- include "ociregistry.checkKeys" (dict "path" (printf "%s.auth" $path) "m" . "keys" (include "ociregistry.keys.auth" $)) }}
{{- end }}
{{- with $r.tls }}
{{- include "ociregistry.checkKeys" (dict "path" (printf "%s.tls" $path) "m" . "keys" (include "ociregistry.keys.registryTls" $)) }}
{{- end }}
{{- end }}
{{- end }}

{{- /* Health: health.port and configuration.health may both be set only if equal */}}
{{- $hv := .Values.health.port }}
{{- $hc := get $cfg "health" }}
{{- if and $hv $hc (ne (int $hv) (int $hc)) }}
{{- fail (printf "health.port (%v) and serverConfig.configuration.health (%v) differ: set one of them, or both to the same port" $hv $hc) }}
{{- end }}
{{- if .Values.health.enabled }}
{{- $_ := set $cfg "health" (int (coalesce $hv $hc 8081)) }}
{{- else if or $hv $hc }}
{{- fail "health.enabled is false but a health port is set (health.port or serverConfig.configuration.health): remove it, or enable health" }}
{{- end }}

{{- /* Metrics: metrics.port and configuration.metrics may both be set only if equal */}}
{{- $mv := .Values.metrics.port }}
{{- $mc := get $cfg "metrics" }}
{{- if and $mv $mc (ne (int $mv) (int $mc)) }}
{{- fail (printf "metrics.port (%v) and serverConfig.configuration.metrics (%v) differ: set one of them, or both to the same port" $mv $mc) }}
{{- end }}
{{- with (coalesce $mv $mc) }}
{{- $_ := set $cfg "metrics" (int .) }}
{{- end }}

{{- /* Admin API */}}
{{- with $cfg.admin }}
{{- include "ociregistry.checkKeys" (dict "path" "serverConfig.configuration.admin" "m" . "keys" (include "ociregistry.keys.admin" $)) }}
{{- if not .port }}
{{- fail "serverConfig.configuration.admin.port is required when admin is set" }}
{{- end }}
{{- $_ := set . "port" (int .port) }}
{{- end }}

{{- /* The cache's life: the cap (cache.maxSize, else 90% of the volume's size when the chart knows it), pins,
pruning, and the preload list. With s3 storage the server refuses maxCacheSize: the local tier's cap is
storage.s3.localCacheSize. (replicaCount is checked here too, so that every template refuses a bad one.) */}}
{{- $_ := include "ociregistry.replicas" . }}
{{- if eq (include "ociregistry.storageType" .) "s3" }}
{{- if or .Values.cache.maxSize (hasKey $cfg "maxCacheSize") }}
{{- fail "cache.maxSize (maxCacheSize) is for filesystem storage: with storage.type s3 the cap of each replica's local tier is storage.s3.localCacheSize" }}
{{- end }}
{{- else }}
{{- with .Values.cache.maxSize }}
{{- if hasKey $cfg "maxCacheSize" }}
{{- fail "set cache.maxSize or serverConfig.configuration.maxCacheSize, not both" }}
{{- end }}
{{- $_ := set $cfg "maxCacheSize" (toString .) }}
{{- end }}
{{- if not (hasKey $cfg "maxCacheSize") }}
{{- $volume := include "ociregistry.volumeSize" . }}
{{- if $volume }}
{{- $_ := set $cfg "maxCacheSize" (int64 (div (mul (int64 $volume) 9) 10)) }}
{{- end }}
{{- end }}
{{- end }}
{{- /* The largest blob (maxBlobSize): the server's default (16Gi) unless cache.maxBlobSize or the key is set; 0 is
no cap of its own. A number is rendered whole, not in a float's exponent form. */}}
{{- $maxBlob := .Values.cache.maxBlobSize }}
{{- if and (not (kindIs "invalid" $maxBlob)) (ne (toString $maxBlob) "") }}
{{- if hasKey $cfg "maxBlobSize" }}
{{- fail "set cache.maxBlobSize or serverConfig.configuration.maxBlobSize, not both" }}
{{- end }}
{{- $_ := set $cfg "maxBlobSize" (ternary (int64 $maxBlob) (toString $maxBlob) (or (kindIs "float64" $maxBlob) (kindIs "int" $maxBlob) (kindIs "int64" $maxBlob))) }}
{{- end }}
{{- with .Values.cache.pinned }}
{{- if hasKey $cfg "pinned" }}
{{- fail "set cache.pinned or serverConfig.configuration.pinned, not both" }}
{{- end }}
{{- $_ := set $cfg "pinned" . }}
{{- end }}
{{- with $cfg.pinned }}
{{- if not (kindIs "slice" .) }}
{{- fail "pinned must be a list of image patterns, e.g. [docker.io/library/*]" }}
{{- end }}
{{- end }}
{{- with $cfg.pruneConfig }}
{{- include "ociregistry.checkKeys" (dict "path" "serverConfig.configuration.pruneConfig" "m" . "keys" (include "ociregistry.keys.prune" $)) }}
{{- include "ociregistry.checkEnum" (dict "path" "serverConfig.configuration.pruneConfig.type" "v" (.type | default nil) "allowed" (list "accessed" "created" "pattern")) }}
{{- end }}
{{- if or .Values.preload.images .Values.preload.configMap }}
{{- if hasKey $cfg "preloadImages" }}
{{- fail "set preload.images (or preload.configMap) or serverConfig.configuration.preloadImages, not both" }}
{{- end }}
{{- if and .Values.preload.images .Values.preload.configMap }}
{{- fail "preload: set images or configMap, not both" }}
{{- end }}
{{- $_ := set $cfg "preloadImages" (printf "%s/images.txt" (include "ociregistry.preloadDir" .)) }}
{{- end }}

{{- /* Server TLS */}}
{{- $st := .Values.serverTls }}
{{- if $st.enabled }}
{{- if hasKey $cfg "serverTlsConfig" }}
{{- fail "set serverTls or serverConfig.configuration.serverTlsConfig, not both: serverTls mounts the certificate and fills in serverTlsConfig" }}
{{- end }}
{{- include "ociregistry.checkEnum" (dict "path" "serverTls.clientAuth" "v" ($st.clientAuth | default "none") "allowed" (list "none" "verify")) }}
{{- if not $st.secretName }}
{{- if not (and $st.cert $st.key) }}
{{- fail "serverTls.enabled needs serverTls.secretName, or serverTls.cert and serverTls.key (e.g. --set-file serverTls.cert=server.crt)" }}
{{- end }}
{{- if and (eq ($st.clientAuth | default "none") "verify") (not $st.ca) }}
{{- fail "serverTls.clientAuth verify needs serverTls.ca: the CA that client certificates must chain to" }}
{{- end }}
{{- end }}
{{- $tlsDir := include "ociregistry.tlsDir" . }}
{{- $tls := dict "cert" (printf "%s/tls.crt" $tlsDir) "key" (printf "%s/tls.key" $tlsDir) "clientAuth" ($st.clientAuth | default "none") }}
{{- if eq ($st.clientAuth | default "none") "verify" }}
{{- $_ := set $tls "ca" (printf "%s/ca.crt" $tlsDir) }}
{{- end }}
{{- $_ := set $cfg "serverTlsConfig" $tls }}
{{- else if hasKey $cfg "serverTlsConfig" }}
{{- include "ociregistry.checkKeys" (dict "path" "serverConfig.configuration.serverTlsConfig" "m" $cfg.serverTlsConfig "keys" (include "ociregistry.keys.serverTls" .)) }}
{{- include "ociregistry.checkEnum" (dict "path" "serverConfig.configuration.serverTlsConfig.clientAuth" "v" ($cfg.serverTlsConfig.clientAuth | default nil) "allowed" (list "none" "verify")) }}
{{- end }}

{{- /* Ports must be valid and distinct */}}
{{- $ports := dict "port" $cfg.port }}
{{- with $cfg.health }}{{ $_ := set $ports "health" . }}{{ end }}
{{- with $cfg.metrics }}{{ $_ := set $ports "metrics" . }}{{ end }}
{{- with $cfg.admin }}{{ $_ := set $ports "admin.port" .port }}{{ end }}
{{- $seen := dict }}
{{- range $name, $p := $ports }}
{{- if or (lt (int $p) 1) (gt (int $p) 65535) }}
{{- fail (printf "%s: %v is not a port (1-65535)" $name $p) }}
{{- end }}
{{- with get $seen (toString $p) }}
{{- fail (printf "%s and %s are both %v: the server needs a distinct port for each listener" . $name $p) }}
{{- end }}
{{- $_ := set $seen (toString $p) $name }}
{{- end }}

{{- /* Shared storage and the peers (storage.type s3; see _storage.tpl) */}}
{{- $cfg = merge $cfg (include "ociregistry.storageConfig" (dict "root" . "cfg" $cfg) | fromYaml) }}

{{- toYaml $cfg }}
{{- end }}

{{/*
The Go server's keys found in serverConfig.configuration with a value that would do something (not empty, not
false, not a pruneConfig that is off), left out of the config file.
*/}}
{{- define "ociregistry.droppedKeys" -}}
{{- $goOnly := splitList " " (include "ociregistry.keys.goOnly" .) }}
{{- $dropped := list }}
{{- range $k, $v := (.Values.serverConfig.configuration | default dict) }}
{{- $off := or (kindIs "invalid" $v) (eq (toString $v) "") (eq (toString $v) "false") (and (kindIs "map" $v) (not $v.enabled)) }}
{{- if and (has $k $goOnly) (not $off) }}{{ $dropped = append $dropped $k }}{{ end }}
{{- end }}
{{- join ", " $dropped }}
{{- end }}
