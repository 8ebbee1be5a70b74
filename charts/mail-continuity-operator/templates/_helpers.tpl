{{/* Chart name, truncated to 63 characters (a label value). */}}
{{- define "mco.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release name already contains it. */}}
{{- define "mco.fullname" -}}
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

{{- define "mco.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mco.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mco.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mco.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: mail-continuity
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* A map of labels as a flag value: k=v,k=v (sorted). */}}
{{- define "mco.labelList" -}}
{{- $pairs := list }}
{{- range $k, $v := . }}{{ $pairs = append $pairs (printf "%s=%s" $k $v) }}{{ end }}
{{- join "," $pairs }}
{{- end }}

{{- define "mco.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mco.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name an existing ServiceAccount" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest. */}}
{{- define "mco.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "mco.leaderElectionNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{/*
The namespace the operator watches, or "" for all. The operator watches one
namespace or all of them; more than one is refused here with what to do instead.
*/}}
{{- define "mco.watchNamespace" -}}
{{- $n := len .Values.watchNamespaces }}
{{- if gt $n 1 }}
{{- fail (printf "watchNamespaces: the operator watches one namespace or all of them, got %d (%s): install one release per namespace (each with its own watchNamespaces and leaderElection Lease), or leave watchNamespaces empty to watch all namespaces" $n (join ", " .Values.watchNamespaces)) }}
{{- end }}
{{- if eq $n 1 }}{{ first .Values.watchNamespaces }}{{ end }}
{{- end }}

{{/* Checks that need more than one value (the schema checks the rest). */}}
{{- define "mco.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: two operators would reconcile the same resources at once; enable leader election or set replicaCount: 1" (int .Values.replicaCount)) }}
{{- end }}
{{- end }}

{{/*
Who else manages the MailContinuity CRD, or "" when this release may apply it: the CRD does
not exist yet, or it carries this release's Helm ownership annotations. A CRD applied with
`kubectl apply --server-side -f crds/` (no annotations) or installed by another release (one
release per namespace) is left alone: Helm would refuse to import it ("invalid ownership
metadata"). `lookup` sees nothing under `helm template` or a client-side dry run, so there
the CRD is always rendered.
*/}}
{{- define "mco.crdManagedElsewhere" -}}
{{- $existing := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" "mailcontinuities.mailcontinuity.io" }}
{{- if $existing }}
{{- $a := default (dict) $existing.metadata.annotations }}
{{- $name := get $a "meta.helm.sh/release-name" }}
{{- $ns := get $a "meta.helm.sh/release-namespace" }}
{{- if not (and (eq $name .Release.Name) (eq $ns .Release.Namespace)) }}
{{- if $name }}
{{- printf "the Helm release %s in namespace %s" $name $ns }}
{{- else }}
{{- "no Helm release (applied with kubectl or another tool)" }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
