{{/* Labels every object of the chart carries. */}}
{{- define "eastwest.labels" -}}
app.kubernetes.io/part-of: eastwest
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* The control plane's Service name, and its in-cluster DNS name. */}}
{{- define "eastwest.host" -}}
eastwest.{{ .Release.Namespace }}.svc
{{- end -}}

{{/* An identity URI: spiffe://<trust domain>/clusterset/<set>/cluster/<id>/role/<role>. */}}
{{- define "eastwest.identity" -}}
spiffe://{{ .root.Values.trustDomain }}/clusterset/{{ .root.Values.clusterSet | default "default" }}/cluster/{{ required "a cluster ID is required" .cluster }}/role/{{ .role }}
{{- end -}}

{{/* A ClusterSet-wide identity URI of the debug endpoint: spiffe://<trust domain>/clusterset/<set>/role/<operator|metrics>. */}}
{{- define "eastwest.debugIdentity" -}}
spiffe://{{ .root.Values.trustDomain }}/clusterset/{{ .root.Values.clusterSet | default "default" }}/role/{{ .role }}
{{- end -}}

{{/* A container image reference. */}}
{{- define "eastwest.image" -}}
{{ .repository }}:{{ .tag }}
{{- end -}}

{{/* Certificate spec fields every Certificate of the chart shares. */}}
{{- define "eastwest.certificateCommon" -}}
duration: {{ .Values.certManager.duration }}
renewBefore: {{ .Values.certManager.renewBefore }}
privateKey: {algorithm: ECDSA, size: 256, rotationPolicy: Always}
issuerRef: {{ toJson .Values.certManager.issuerRef }}
{{- end -}}

{{/* An Envoy bootstrap of files/, pointed at the control plane: it dials
the host and port of xdsAddress and verifies (and sends as SNI) the
serverName, by default that host when it is a name, and the control
plane's in-cluster Service name when it is an address (a certificate
names a DNS name, not the address it is reached at). */}}
{{- define "eastwest.bootstrap" -}}
{{- $host := index (splitList ":" .xdsAddress) 0 -}}
{{- $port := index (splitList ":" .xdsAddress) 1 -}}
{{- $name := .serverName | default (ternary "eastwest.eastwest-system.svc" $host (regexMatch "^[0-9.]+$" $host)) -}}
{{- .root.Files.Get .file | replace "eastwest.eastwest-system.svc:18000" .xdsAddress | replace "address: eastwest.eastwest-system.svc" (printf "address: %s" $host) | replace "port_value: 18000" (printf "port_value: %s" $port) | replace "eastwest.eastwest-system.svc" $name -}}
{{- end -}}

{{/* The flags of `xds probe` in the control plane's pod. */}}
{{- define "eastwest.probeFlags" -}}
{{- $cp := .Values.controlPlane -}}
--debug-address=127.0.0.1:{{ $cp.metrics.port }}
{{- if $cp.metrics.expose -}}
, --debug-ca=/etc/eastwest/tls/ca.crt, --debug-cert=/etc/eastwest/tls/tls.crt, --debug-key=/etc/eastwest/tls/tls.key, --debug-server-name=eastwest.{{ .Release.Namespace }}.svc
{{- end -}}
{{- end -}}

{{/* The xDS TLS volume of an Envoy: its certificate Secret, and the control
plane's CA from controlPlaneCA.configMap when set (a projected volume, so
the bootstrap reads both from one folder). */}}
{{- define "eastwest.xdsTLSVolume" -}}
- name: xds-tls
{{- if .root.Values.controlPlaneCA.configMap }}
  projected:
    sources:
    - secret:
        name: {{ .secret }}
        items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]
    - configMap:
        name: {{ .root.Values.controlPlaneCA.configMap }}
        items: [{key: ca.crt, path: ca.crt}]
{{- else }}
  secret: {secretName: {{ .secret }}}
{{- end }}
{{- end -}}
