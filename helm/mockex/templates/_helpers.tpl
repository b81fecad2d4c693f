{{/* Names and labels, in the style of `helm create`. */}}

{{- define "mockex.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; each component's objects are "<fullname>-<component>". */}}
{{- define "mockex.fullname" -}}
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

{{- define "mockex.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mockex.labels" -}}
helm.sh/chart: {{ include "mockex.chart" . }}
{{ include "mockex.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mockex.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mockex.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "mockex.componentLabels" -}}
{{ include "mockex.labels" .root }}
app.kubernetes.io/component: {{ .component }}
mockex.dev/tier: {{ include "mockex.tier" .component }}
{{- end }}

{{- define "mockex.componentSelector" -}}
{{ include "mockex.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The tier of a component, as the NetworkPolicies separate them. */}}
{{- define "mockex.tier" -}}
{{- $tiers := dict "envoy" "edge" "gateway" "api" "stream" "api" "store" "data" "data" "data" "engine" "engine" "redis" "engine" "kafka" "engine" "postgres" "data" }}
{{- get $tiers . }}
{{- end }}

{{- define "mockex.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "mockex.secretName" -}}
{{- default (printf "%s-secrets" (include "mockex.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{/* Service DNS names of the bundled stores, or the external addresses from values. */}}
{{- define "mockex.redisUrl" -}}
{{- if .Values.redis.bundled }}
{{- printf "redis://%s-redis:6379/0" (include "mockex.fullname" .) }}
{{- else }}
{{- required "redis.external.url is required when redis.bundled is false" .Values.redis.external.url }}
{{- end }}
{{- end }}

{{- define "mockex.kafkaBootstrap" -}}
{{- if .Values.kafka.bundled }}
{{- $fullname := include "mockex.fullname" . }}
{{- $brokers := list }}
{{- range $i := until (int .Values.kafka.replicas) }}
{{- $brokers = append $brokers (printf "%s-kafka-%d.%s-kafka-headless:9092" $fullname $i $fullname) }}
{{- end }}
{{- join "," $brokers }}
{{- else }}
{{- required "kafka.external.bootstrap is required when kafka.bundled is false" .Values.kafka.external.bootstrap }}
{{- end }}
{{- end }}

{{/* Environment every service gets: where Redis, Kafka and the other services are, and the
     secrets. mockex.container (the image's entrypoint) puts MOCKEX_REDIS_PASSWORD into
     MOCKEX_REDIS_URL. Names: mockex/settings.py and each service's config.py. */}}
{{- define "mockex.commonEnv" -}}
{{- $fullname := include "mockex.fullname" . }}
- name: MOCKEX_ADMIN_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "mockex.secretName" . }}, key: admin-key}
- name: MOCKEX_REDIS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ include "mockex.secretName" . }}, key: redis-password}
- name: MOCKEX_REDIS_URL
  value: {{ include "mockex.redisUrl" . | quote }}
- name: MOCKEX_KAFKA_BOOTSTRAP
  value: {{ include "mockex.kafkaBootstrap" . | quote }}
- name: MOCKEX_EVENTS_TOPIC
  value: {{ .Values.kafka.topics.events.name | quote }}
- name: MOCKEX_SNAPSHOTS_TOPIC
  value: {{ .Values.kafka.topics.snapshots.name | quote }}
- name: MOCKEX_GATEWAY_ADDRESS
  value: {{ printf "%s-gateway:50051" $fullname | quote }}
- name: MOCKEX_STREAM_ADDRESS
  value: {{ printf "%s-stream:50053" $fullname | quote }}
- name: MOCKEX_STORE_ADDRESS
  value: {{ printf "%s-store:50054" $fullname | quote }}
- name: MOCKEX_DATA_ADDRESS
  value: {{ printf "%s-data:50056" $fullname | quote }}
{{- end }}

{{/* Pod and container security of our image (non-root uid 10001, read-only root). */}}
{{- define "mockex.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* A topic's settings as kafka-configs takes them: "k=v,k=v"; min.insync.replicas added from
     kafka.minInsyncReplicas. (dict "root" $ "topic" .Values.kafka.topics.events) */}}
{{- define "mockex.topicConfig" -}}
{{- $config := merge (dict "min.insync.replicas" (toString .root.Values.kafka.minInsyncReplicas)) .topic.config }}
{{- $pairs := list }}
{{- range $key := keys $config | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%v" $key (index $config $key)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}
