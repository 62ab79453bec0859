{{/* Names, labels and the few checks the JSON schema cannot express. */}}

{{- define "afo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or the release name when it already contains the chart name; at most 55
characters, so that "<fullname>-webhook" and "<fullname>-kafka" stay within 63. */}}
{{- define "afo.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "afo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "afo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "afo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "afo.labels" -}}
helm.sh/chart: {{ include "afo.chart" . }}
{{ include "afo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: alert-filter
{{- end }}

{{- define "afo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "afo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "afo.webhookService" -}}
{{- printf "%s-webhook" (include "afo.fullname" .) }}
{{- end }}

{{/* An image reference from {repository, tag, digest}; the tag defaults to the appVersion. */}}
{{- define "afo.image" -}}
{{- $img := index . 0 }}{{- $root := index . 1 }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/* Namespaced mode (operator.watchNamespaces set): every namespace the operator watches and has
Roles in, the filters' and the Kafka clusters', comma-separated. */}}
{{- define "afo.watchedNamespaces" -}}
{{- concat .Values.operator.watchNamespaces .Values.operator.kafkaNamespaces | uniq | join "," }}
{{- end }}

{{- define "afo.kafkaNamespace" -}}
{{- default .Release.Namespace .Values.centralKafka.namespace }}
{{- end }}

{{/* Checks across values (the schema checks each value alone). */}}
{{- define "afo.validate" -}}
{{- if and .Values.operator.watchNamespaces (not .Values.operator.kafkaNamespaces) }}
{{- fail "operator.kafkaNamespaces: list the namespaces of your FilterPools' Kafka clusters (FilterPool spec.kafka.namespace) when operator.watchNamespaces is set: the operator writes Strimzi resources there" }}
{{- end }}
{{- with .Values.centralKafka }}
{{- if .enabled }}
{{- if gt (int .topic.replicas) (int .replicas) }}
{{- fail (printf "centralKafka.topic.replicas (%d) cannot exceed centralKafka.replicas (%d): Kafka cannot place more replicas than it has brokers" (int .topic.replicas) (int .replicas)) }}
{{- end }}
{{- if gt (int .topic.minInsyncReplicas) (int .topic.replicas) }}
{{- fail (printf "centralKafka.topic.minInsyncReplicas (%d) cannot exceed centralKafka.topic.replicas (%d): producers with acks=all could never write" (int .topic.minInsyncReplicas) (int .topic.replicas)) }}
{{- end }}
{{- if eq (int .listeners.plain.port) (int .listeners.scram.port) }}
{{- fail "centralKafka.listeners.scram.port must differ from centralKafka.listeners.plain.port" }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq (int .Values.operator.webhook.port) (int .Values.operator.healthPort) }}
{{- fail "operator.webhook.port must differ from operator.healthPort" }}
{{- end }}
{{- end }}
