{{/* Names, labels, images, addresses and the configuration file, shared by every template. */}}

{{- define "briefxai.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>", or the release name when it already contains the chart name; 63 characters at most
minus room for "-clustering". */}}
{{- define "briefxai.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "briefxai.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The workers the gateway calls, and every service. */}}
{{- define "briefxai.workers" -}}
embedding facets clustering
{{- end }}

{{/* The grpc.health.v1 service name each service registers (its servicer's full name): readiness asks
for it. */}}
{{- define "briefxai.healthService" -}}
{{- $names := dict
  "gateway" "briefxai.gateway.v1.AnalysisService"
  "embedding" "briefxai.embedding.v1.EmbeddingService"
  "facets" "briefxai.facets.v1.FacetsService"
  "clustering" "briefxai.clustering.v1.ClusteringService" }}
{{- get $names . }}
{{- end }}

{{/* Resource name of a component: (dict "root" $ "name" "gateway"). */}}
{{- define "briefxai.componentName" -}}
{{- printf "%s-%s" (include "briefxai.fullname" .root) .name }}
{{- end }}

{{- define "briefxai.selectorLabels" -}}
app.kubernetes.io/name: {{ include "briefxai.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "briefxai.labels" -}}
helm.sh/chart: {{ include "briefxai.chart" .root }}
{{ include "briefxai.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: briefxai
{{- end }}

{{- define "briefxai.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "briefxai.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "<registry>/<repository>:<tag>" of a component: (dict "root" $ "name" "gateway"). */}}
{{- define "briefxai.image" -}}
{{- $image := (index .root.Values .name).image }}
{{- $tag := $image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- if .root.Values.image.registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.image.registry) $image.repository $tag }}
{{- else }}
{{- printf "%s:%s" $image.repository $tag }}
{{- end }}
{{- end }}

{{/* The gateway's address of a worker: its headless Service's DNS name, which resolves to every ready pod, so
that the gateway's round_robin channel spreads calls over them. (dict "root" $ "name" "embedding") */}}
{{- define "briefxai.workerAddress" -}}
{{- printf "dns:///%s.%s.svc.%s:%v" (include "briefxai.componentName" .) .root.Release.Namespace .root.Values.clusterDomain (index .root.Values .name).ports.grpc }}
{{- end }}

{{/* The Secret holding the service token: serviceToken.existingSecret, else the one the chart makes. */}}
{{- define "briefxai.serviceTokenSecret" -}}
{{- .Values.serviceToken.existingSecret | default (printf "%s-service-token" (include "briefxai.fullname" .)) }}
{{- end }}

{{/* Where tls.existingSecret (tls.crt, tls.key, ca.crt) is mounted. */}}
{{- define "briefxai.tlsDir" -}}
/etc/briefxai-tls
{{- end }}

{{/* A service's tls settings with TLS on: its certificate and key, the CA that verifies the services it
calls and, on a worker with tls.mutual, the CA its clients' certificates must come from (mTLS). */}}
{{- define "briefxai.tlsSettings" -}}
{{- $dir := include "briefxai.tlsDir" .root }}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir) "ca_file" (printf "%s/ca.crt" $dir) }}
{{- if and .root.Values.tls.mutual (ne .name "gateway") }}
{{- $_ := set $tls "client_ca_file" (printf "%s/ca.crt" $dir) }}
{{- end }}
{{- toYaml $tls }}
{{- end }}

{{/* Where the gateway's SQLite database lives: the gateway image's volume, here the pod's data volume. */}}
{{- define "briefxai.sqliteDir" -}}
/var/lib/briefxai
{{- end }}

{{/* The configuration file (BRIEFXAI_CONFIG) of all four services: one section each. The chart writes the
ports, the drain period, the metrics switch, the gateway's worker addresses and auth/audit/retention settings
("briefxai.gatewaySecurity") and, with tls.enabled, the tls settings; each service's `config` values add the rest. The gateway's store URL is an environment variable (BRIEFXAI_GATEWAY_STORE_URL),
which the images set too and which wins over the file. */}}
{{- define "briefxai.config" -}}
{{- $root := . }}
{{- $file := dict }}
{{- range $name := list "gateway" "embedding" "facets" "clustering" }}
{{- $svc := index $root.Values $name }}
{{- $section := deepCopy ($svc.config | default dict) }}
{{- $_ := set $section "grpc_port" $svc.ports.grpc }}
{{- $_ := set $section "http_port" $svc.ports.http }}
{{- $_ := set $section "grace_period_seconds" $svc.drainSeconds }}
{{- $_ := set $section "metrics_enabled" $root.Values.metrics.enabled }}
{{- if $root.Values.tls.enabled }}
{{- $_ := set $section "tls" (include "briefxai.tlsSettings" (dict "root" $root "name" $name) | fromYaml) }}
{{- end }}
{{- if eq $name "gateway" }}
{{- range $worker := splitList " " (include "briefxai.workers" $root) }}
{{- $_ := set $section (printf "%s_address" $worker) (include "briefxai.workerAddress" (dict "root" $root "name" $worker)) }}
{{- end }}
{{- range $key, $value := include "briefxai.gatewaySecurity" (dict "root" $root "config" $section) | fromYaml }}
{{- $_ := set $section $key $value }}
{{- end }}
{{- end }}
{{- $_ := set $file $name $section }}
{{- end }}
{{- toYaml $file }}
{{- end }}

{{/* Pod annotations of a component: config checksum (a config change rolls the pods), scrape annotations. */}}
{{- define "briefxai.podAnnotations" -}}
{{- $svc := index .root.Values .name -}}
checksum/config: {{ include "briefxai.config" .root | sha256sum }}
{{- if and .root.Values.metrics.enabled .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $svc.ports.http | quote }}
prometheus.io/path: /metrics
{{- if .root.Values.tls.enabled }}
prometheus.io/scheme: https
{{- end }}
{{- end }}
{{- with $svc.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Where the gateway's key files are mounted (one projected volume): admin.key (the bootstrap admin API
key), checkpoint.key (the audit trail's signing key) and, with auth.jwt.issuer, jwks.json. */}}
{{- define "briefxai.authDir" -}}
/etc/briefxai-auth
{{- end }}

{{/* The Secret holding the bootstrap admin API key: auth.adminKey.existingSecret, else the chart's. */}}
{{- define "briefxai.adminKeySecret" -}}
{{- .Values.auth.adminKey.existingSecret | default (printf "%s-admin-key" (include "briefxai.fullname" .)) }}
{{- end }}

{{/* The Secret holding the audit checkpoint key: audit.checkpointKey.existingSecret, else the chart's. */}}
{{- define "briefxai.checkpointKeySecret" -}}
{{- .Values.audit.checkpointKey.existingSecret | default (printf "%s-audit-checkpoint-key" (include "briefxai.fullname" .)) }}
{{- end }}

{{/* auth.mode as the gateway reads it: "on" or "off" (a bare `on` in a values file is YAML's true). */}}
{{- define "briefxai.authMode" -}}
{{- $mode := .Values.auth.mode }}
{{- if kindIs "bool" $mode }}{{ ternary "on" "off" $mode }}{{ else }}{{ $mode }}{{ end }}
{{- end }}

{{/* A Secret of one random value the chart makes, kept on upgrade (read back with lookup) and when the
release is uninstalled: (dict "root" $ "component" "admin-key" "name" <Secret> "key" <key> "value" <new value>).
The value is used on install only, or when the Secret lacks the key. */}}
{{- define "briefxai.keptSecret" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "briefxai.labels" (dict "root" .root "name" .component) | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep
type: Opaque
data:
  {{- if and $existing (hasKey ($existing.data | default dict) .key) }}
  {{ .key }}: {{ index $existing.data .key }}
  {{- else }}
  {{ .key }}: {{ .value | b64enc }}
  {{- end }}
{{- end }}

{{/* The gateway's auth, audit and retention sections: the chart's values over what the gateway's `config`
holds of them (its lockout, rules, jwt.algorithms, record_reads, purge_interval_seconds...). The key
files are the ones mounted at "briefxai.authDir"; the checkpoint key is always set, so that the chain
head is signed. (dict "root" $ "config" <the gateway's section so far>) */}}
{{- define "briefxai.gatewaySecurity" -}}
{{- $values := .root.Values }}
{{- $dir := include "briefxai.authDir" .root }}
{{- $auth := deepCopy (get .config "auth" | default dict) }}
{{- $_ := set $auth "mode" (include "briefxai.authMode" .root) }}
{{- $_ := set $auth "bootstrap_admin_key_file" (printf "%s/admin.key" $dir) }}
{{- if $values.auth.jwt.issuer }}
{{- $jwt := get $auth "jwt" | default dict }}
{{- $_ := set $jwt "issuer" $values.auth.jwt.issuer }}
{{- $_ := set $jwt "audience" $values.auth.jwt.audience }}
{{- $_ := set $jwt "tenant_claim" $values.auth.jwt.tenantClaim }}
{{- $_ := set $jwt "role_claim" $values.auth.jwt.roleClaim }}
{{- $_ := set $jwt "jwks_file" (printf "%s/jwks.json" $dir) }}
{{- $_ := set $auth "jwt" $jwt }}
{{- end }}
{{- $audit := deepCopy (get .config "audit" | default dict) }}
{{- $_ := set $audit "retention_days" $values.audit.retentionDays }}
{{- $_ := set $audit "checkpoint_key_file" (printf "%s/checkpoint.key" $dir) }}
{{- $retention := deepCopy (get .config "retention" | default dict) }}
{{- $_ := set $retention "analysis_max_age_days" $values.retention.analysisMaxAgeDays }}
{{- toYaml (dict "auth" $auth "audit" $audit "retention" $retention) }}
{{- end }}
