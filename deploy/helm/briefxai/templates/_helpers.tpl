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

{{/* Where the gateway's SQLite database lives: the gateway image's volume, here the pod's data volume. */}}
{{- define "briefxai.sqliteDir" -}}
/var/lib/briefxai
{{- end }}

{{/* The configuration file (BRIEFXAI_CONFIG) of all four services: one section each. The chart writes the
ports, the drain period, the metrics switch and the gateway's worker addresses; each service's `config`
values add the rest. The gateway's store URL is an environment variable (BRIEFXAI_GATEWAY_STORE_URL),
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
{{- if eq $name "gateway" }}
{{- range $worker := splitList " " (include "briefxai.workers" $root) }}
{{- $_ := set $section (printf "%s_address" $worker) (include "briefxai.workerAddress" (dict "root" $root "name" $worker)) }}
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
{{- end }}
{{- with $svc.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}
