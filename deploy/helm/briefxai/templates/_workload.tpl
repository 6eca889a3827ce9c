{{/* The resources every component has, one named template per kind; templates/<component>/*.yaml include
them with (dict "root" $ "name" "<component>"). */}}

{{- define "briefxai.deployment" -}}
{{- $root := .root }}
{{- $name := .name }}
{{- $svc := index $root.Values $name }}
{{- $gateway := eq $name "gateway" }}
{{- $sqlite := and $gateway (eq $svc.store.type "sqlite") }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "briefxai.componentName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "briefxai.labels" . | nindent 4 }}
spec:
  {{- if not $svc.autoscaling.enabled }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- if $sqlite }}
  # One SQLite file on a ReadWriteOnce volume: the old pod goes before the new one starts.
  strategy:
    type: Recreate
  {{- end }}
  selector:
    matchLabels:
      {{- include "briefxai.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "briefxai.labels" . | nindent 8 }}
        {{- with $svc.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- include "briefxai.podAnnotations" . | nindent 8 }}
    spec:
      serviceAccountName: {{ include "briefxai.serviceAccountName" $root }}
      automountServiceAccountToken: false
      # Kubernetes' Service variables (BRIEFXAI_GATEWAY_PORT=tcp://..., for a release named briefxai) would
      # share the services' settings prefix BRIEFXAI_<SERVICE>_; the services find each other by DNS.
      enableServiceLinks: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      # The server's drain period (grace_period_seconds = drainSeconds) and the shutdown after it.
      terminationGracePeriodSeconds: {{ add $svc.drainSeconds $svc.shutdownSeconds }}
      containers:
        - name: {{ $name }}
          image: {{ include "briefxai.image" . | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          ports:
            - name: grpc
              containerPort: {{ $svc.ports.grpc }}
              protocol: TCP
            - name: http
              containerPort: {{ $svc.ports.http }}
              protocol: TCP
          env:
            - name: BRIEFXAI_CONFIG
              value: /etc/briefxai/briefxai.yaml
            {{- if $gateway }}
            # The store's URL (the image's environment sets the same variable to its SQLite default).
            - name: BRIEFXAI_GATEWAY_STORE_URL
              {{- if $sqlite }}
              value: {{ printf "sqlite:///%s/gateway.db" (include "briefxai.sqliteDir" $root) }}
              {{- else }}
              valueFrom:
                secretKeyRef:
                  name: {{ $svc.store.postgresql.existingSecret }}
                  key: {{ $svc.store.postgresql.key }}
              {{- end }}
            {{- end }}
            # Shared by the gateway (which sends it) and the workers (which require it of every call).
            - name: BRIEFXAI_{{ upper $name }}_SERVICE_TOKEN
              valueFrom:
                secretKeyRef:
                  name: {{ include "briefxai.serviceTokenSecret" $root }}
                  key: {{ $root.Values.serviceToken.key }}
            {{- with include "briefxai.tracingEnv" . }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with $svc.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- if $root.Values.tls.enabled }}
          # Kubernetes' gRPC probes speak plaintext only: with TLS the HTTP port's /readyz (the service can
          # serve: started, not draining) and /livez (the event loop answers), over HTTPS (not verified).
          startupProbe:
            httpGet:
              path: /readyz
              port: http
              scheme: HTTPS
            {{- toYaml $svc.probes.startup | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
              scheme: HTTPS
            {{- toYaml $svc.probes.readiness | nindent 12 }}
          livenessProbe:
            httpGet:
              path: /livez
              port: http
              scheme: HTTPS
            {{- toYaml $svc.probes.liveness | nindent 12 }}
          {{- else }}
          # grpc.health.v1: "" is the process's overall status, the service's own name its readiness (NOT_SERVING
          # while the model loads or the providers start, and while draining).
          startupProbe:
            grpc:
              port: {{ $svc.ports.grpc }}
              service: ""
            {{- toYaml $svc.probes.startup | nindent 12 }}
          readinessProbe:
            grpc:
              port: {{ $svc.ports.grpc }}
              service: {{ include "briefxai.healthService" $name }}
            {{- toYaml $svc.probes.readiness | nindent 12 }}
          livenessProbe:
            grpc:
              port: {{ $svc.ports.grpc }}
              service: ""
            {{- toYaml $svc.probes.liveness | nindent 12 }}
          {{- end }}
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/briefxai
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- if $root.Values.tls.enabled }}
            - name: tls
              mountPath: {{ include "briefxai.tlsDir" $root }}
              readOnly: true
            {{- end }}
            {{- if $gateway }}
            - name: auth
              mountPath: {{ include "briefxai.authDir" $root }}
              readOnly: true
            {{- end }}
            {{- if $sqlite }}
            - name: data
              mountPath: {{ include "briefxai.sqliteDir" $root }}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "briefxai.fullname" $root }}-config
        - name: tmp
          emptyDir: {}
        {{- if $root.Values.tls.enabled }}
        - name: tls
          secret:
            secretName: {{ $root.Values.tls.existingSecret }}
        {{- end }}
        {{- if $gateway }}
        {{- include "briefxai.authVolume" $root | nindent 8 }}
        {{- end }}
        {{- if $sqlite }}
        - name: data
          {{- if $svc.store.sqlite.persistence.enabled }}
          persistentVolumeClaim:
            claimName: {{ $svc.store.sqlite.persistence.existingClaim | default (printf "%s-data" (include "briefxai.componentName" .)) }}
          {{- else }}
          emptyDir: {}
          {{- end }}
        {{- end }}
      {{- with $svc.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{/* The gateway's key files, one projected volume at "briefxai.authDir": admin.key, checkpoint.key and, with
auth.jwt.issuer, jwks.json (from a Secret or a ConfigMap). Readable by the pod's fsGroup only. */}}
{{- define "briefxai.authVolume" -}}
{{- $jwks := .Values.auth.jwt.jwks -}}
- name: auth
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ include "briefxai.adminKeySecret" . }}
          items:
            - key: {{ .Values.auth.adminKey.key | quote }}
              path: admin.key
      - secret:
          name: {{ include "briefxai.checkpointKeySecret" . }}
          items:
            - key: {{ .Values.audit.checkpointKey.key | quote }}
              path: checkpoint.key
      {{- if .Values.auth.jwt.issuer }}
      - {{ if $jwks.existingSecret }}secret{{ else }}configMap{{ end }}:
          name: {{ $jwks.existingSecret | default $jwks.configMap }}
          items:
            - key: {{ $jwks.key | quote }}
              path: jwks.json
      {{- end }}
{{- end }}

{{/* OTEL_* variables of every container when traces are exported; the pod's name and namespace go into the
resource attributes. */}}
{{- define "briefxai.tracingEnv" -}}
{{- $tracing := .root.Values.tracing }}
{{- if $tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $tracing.otlpEndpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $tracing.protocol | quote }}
{{- with $tracing.sampler }}
- name: OTEL_TRACES_SAMPLER
  value: {{ . | quote }}
{{- end }}
{{- with $tracing.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.pod.name=$(K8S_POD_NAME),k8s.namespace.name=$(K8S_NAMESPACE_NAME),service.instance.id=$(K8S_POD_NAME)"
{{- end }}
{{- end }}

{{/* A worker's Service is headless (clusterIP: None): its DNS name resolves to every ready pod, and the
gateway's round_robin channel balances calls over them (a ClusterIP would pin each HTTP/2 connection to
one pod). The gateway's is a ClusterIP. */}}
{{- define "briefxai.service" -}}
{{- $svc := index .root.Values .name }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "briefxai.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "briefxai.labels" . | nindent 4 }}
  {{- if eq .name "gateway" }}
  {{- with $svc.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
spec:
  {{- if eq .name "gateway" }}
  type: {{ $svc.service.type }}
  {{- else }}
  clusterIP: None
  {{- end }}
  selector:
    {{- include "briefxai.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $svc.ports.grpc }}
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
    - name: http
      port: {{ $svc.ports.http }}
      targetPort: http
      protocol: TCP
      appProtocol: http
{{- end }}

{{- define "briefxai.hpa" -}}
{{- $autoscaling := (index .root.Values .name).autoscaling }}
{{- if $autoscaling.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "briefxai.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "briefxai.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "briefxai.componentName" . }}
  minReplicas: {{ $autoscaling.minReplicas }}
  maxReplicas: {{ $autoscaling.maxReplicas }}
  metrics:
    {{- with $autoscaling.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
    {{- with $autoscaling.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
{{- end }}
{{- end }}

{{- define "briefxai.pdb" -}}
{{- $pdb := (index .root.Values .name).podDisruptionBudget }}
{{- if $pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "briefxai.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "briefxai.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "briefxai.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* Ingress to a component's pods. Workers: gRPC from the gateway's pods and the `helm test` pod only, HTTP
(/metrics, /health) from networkPolicy.metricsFrom. Gateway: both ports from networkPolicy.gatewayFrom.
An empty peer list allows anyone on those ports; other ports are closed. Egress is not restricted (DNS,
PostgreSQL, the OTLP collector and LLM APIs live outside the chart). */}}
{{- define "briefxai.networkPolicy" -}}
{{- $values := .root.Values.networkPolicy }}
{{- if $values.enabled }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "briefxai.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "briefxai.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "briefxai.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    {{- if eq .name "gateway" }}
    - ports:
        - port: grpc
          protocol: TCP
        - port: http
          protocol: TCP
      {{- with $values.gatewayFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- else }}
    - ports:
        - port: grpc
          protocol: TCP
      from:
        - podSelector:
            matchLabels:
              {{- include "briefxai.selectorLabels" (dict "root" .root "name" "gateway") | nindent 14 }}
        - podSelector:
            matchLabels:
              {{- include "briefxai.selectorLabels" (dict "root" .root "name" "test") | nindent 14 }}
    - ports:
        - port: http
          protocol: TCP
      {{- with $values.metricsFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
{{- end }}
{{- end }}
