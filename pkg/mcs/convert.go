package mcs

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1b1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// defaultSessionAffinityTimeout is the apiserver's default for
// sessionAffinityConfig.clientIP.timeoutSeconds; two exports that differ only
// by one of them leaving it to the default do not conflict.
const defaultSessionAffinityTimeout int32 = 10800

// exportFromV1beta1 keeps what the merge reads of a v1beta1 ServiceExport.
func exportFromV1beta1(se *mcsv1b1.ServiceExport) *Export {
	return (&Export{
		Created:             se.CreationTimestamp.Time,
		Generation:          se.Generation,
		APIVersion:          mcsv1b1.GroupVersion.String(),
		ExportedLabels:      se.Spec.ExportedLabels,
		ExportedAnnotations: se.Spec.ExportedAnnotations,
		Passthrough:         se.Annotations[AnnotationPassthrough] == "true",
	}).trafficPolicyFrom(se.Annotations)
}

// exportFromV1alpha1 keeps what the merge reads of a v1alpha1 ServiceExport;
// both versions carry the same fields.
func exportFromV1alpha1(se *mcsv1a1.ServiceExport) *Export {
	return (&Export{
		Created:             se.CreationTimestamp.Time,
		Generation:          se.Generation,
		APIVersion:          mcsv1a1.GroupVersion.String(),
		ExportedLabels:      se.Spec.ExportedLabels,
		ExportedAnnotations: se.Spec.ExportedAnnotations,
		Passthrough:         se.Annotations[AnnotationPassthrough] == "true",
	}).trafficPolicyFrom(se.Annotations)
}

// serviceFrom keeps what the merge reads of a Service and applies the
// apiserver's defaults, so that a Service read from YAML and the same
// Service read from a cluster merge alike.
func serviceFrom(svc *corev1.Service) *Service {
	s := &Service{
		Type:                svc.Spec.Type,
		Headless:            svc.Spec.ClusterIP == corev1.ClusterIPNone,
		SessionAffinity:     svc.Spec.SessionAffinity,
		IPFamilies:          svc.Spec.IPFamilies,
		TrafficDistribution: ptr.Deref(svc.Spec.TrafficDistribution, ""),
	}
	if s.Type == "" {
		s.Type = corev1.ServiceTypeClusterIP
	}
	if s.SessionAffinity == "" {
		s.SessionAffinity = corev1.ServiceAffinityNone
	}
	if s.SessionAffinity == corev1.ServiceAffinityClientIP {
		timeout := defaultSessionAffinityTimeout
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			timeout = *c.ClientIP.TimeoutSeconds
		}
		s.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	}
	s.InternalTrafficPolicy = corev1.ServiceInternalTrafficPolicyCluster
	if p := svc.Spec.InternalTrafficPolicy; p != nil && *p != "" {
		s.InternalTrafficPolicy = *p
	}
	if len(s.IPFamilies) == 0 {
		s.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	s.Ports = make([]mcsv1b1.ServicePort, 0, len(svc.Spec.Ports))
	for _, p := range svc.Spec.Ports {
		s.Ports = append(s.Ports, mcsv1b1.ServicePort{
			Name:        p.Name,
			Protocol:    defaultProtocol(p.Protocol),
			AppProtocol: p.AppProtocol,
			Port:        p.Port,
		})
	}
	return s
}

// sliceFrom keeps what translation reads of an EndpointSlice: its ports
// and (shared, see Slice) its endpoints.
func sliceFrom(es *discoveryv1.EndpointSlice) *Slice {
	s := &Slice{
		Name:        es.Name,
		AddressType: es.AddressType,
		Ports:       make([]SlicePort, 0, len(es.Ports)),
		endpoints:   es.Endpoints,
	}
	for _, p := range es.Ports {
		if p.Port == nil {
			// A nil port means "all ports" in the EndpointSlice API; it
			// cannot serve a named Service port, so it is left out.
			continue
		}
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		s.Ports = append(s.Ports, SlicePort{Name: ptr.Deref(p.Name, ""), Protocol: proto, Port: *p.Port, AppProtocol: p.AppProtocol})
	}
	return s
}

func defaultProtocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}
