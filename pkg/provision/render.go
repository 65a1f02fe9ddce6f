package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/eastwest-dev/eastwest/pkg/identity"
)

// The labels GEP-1762 asks for on every generated object.
const (
	LabelGatewayName  = "gateway.networking.k8s.io/gateway-name"
	LabelGatewayClass = "gateway.networking.k8s.io/gateway-class-name"
	// LabelManagedBy marks what eastwest made (and may delete).
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is LabelManagedBy's value.
	ManagedBy = "eastwest"
)

// Where the Envoy container finds its files, and its ports of its own.
const (
	bootstrapDir = "/etc/envoy"
	identityDir  = "/etc/eastwest/xds-tls"
	// ReadyPort serves Envoy's /ready (its admin's, which stays on
	// loopback) to the kubelet's readiness probe, and its
	// /stats/prometheus to scrapers.
	ReadyPort = 19001
	adminPort = 9901
	// envoyUID is the envoy user of the official image.
	envoyUID = 101
)

// Member is what Render needs of the Gateway's member cluster.
type Member struct {
	// ClusterID is the member's ClusterSet-unique ID (Envoy's
	// --service-cluster).
	ClusterID string
	// ClusterSet and TrustDomain name the Envoys' identity.
	ClusterSet, TrustDomain string
}

// Identity is the xDS identity of a Gateway's Envoys in the member: the
// URI SAN of the client certificate they present.
func (m Member) Identity(gw *gwapiv1.Gateway) string {
	set := m.ClusterSet
	if set == "" {
		set = "default"
	}
	return identity.ID{TrustDomain: m.TrustDomain, ClusterSet: set, Cluster: m.ClusterID, Role: identity.RoleGatewayAPI, Gateway: gw.Namespace + "/" + gw.Name}.String()
}

// AnnotationIdentity on the Deployment is the identity its Envoys must
// present (what the identity Secret's certificate names).
const AnnotationIdentity = "eastwest.io/xds-identity"

// Objects are what one Gateway's Envoys need, in the order they are
// applied (the Deployment after what it mounts).
type Objects struct {
	ServiceAccount *corev1.ServiceAccount
	ConfigMap      *corev1.ConfigMap
	Deployment     *appsv1.Deployment
	Service        *corev1.Service
	// PodDisruptionBudget is nil for fewer than two replicas (a budget
	// of one pod would block every drain).
	PodDisruptionBudget *policyv1.PodDisruptionBudget
	// IdentitySecret is the name of the Secret (kubernetes.io/tls with
	// ca.crt) the Envoys present to eastwest; "" with a plaintext xDS
	// connection.
	IdentitySecret string
}

// Name is the name of a Gateway's generated objects: <gateway>-<class>
// (GEP-1762), shortened with a hash of the whole when it is not a DNS
// label of at most 63 characters (a Service's name must be).
func Name(gateway, class string) string {
	n := gateway + "-" + class
	if len(validation.IsDNS1035Label(n)) == 0 {
		return n
	}
	sum := sha256.Sum256([]byte(n))
	prefix := strings.Trim(strings.ToLower(n[:min(len(n), 50)]), "-.")
	prefix = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, prefix)
	if prefix == "" || prefix[0] < 'a' || prefix[0] > 'z' {
		prefix = "gw-" + prefix
	}
	return strings.TrimRight(prefix[:min(len(prefix), 50)], "-") + "-" + hex.EncodeToString(sum[:])[:10]
}

// IdentitySecretName is the Secret holding the xDS identity of the
// Envoys of a Gateway of class class.
func IdentitySecretName(gateway, class string) string { return Name(gateway, class) + "-xds" }

// labelValue is v as a label value: v when valid, else shortened with a
// hash (a Gateway's name may be longer than a label value).
func labelValue(v string) string {
	if len(validation.IsValidLabelValue(v)) == 0 {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return strings.Trim(v[:50], "-_.") + "-" + hex.EncodeToString(sum[:])[:10]
}

// Render returns the objects a Gateway of class class needs, from its
// resolved parameters. It is pure: the same inputs give the same objects.
func Render(gw *gwapiv1.Gateway, class string, m Member, p Params) (Objects, error) {
	name := Name(gw.Name, class)
	selector := map[string]string{LabelGatewayName: labelValue(gw.Name), LabelGatewayClass: labelValue(class)}
	labels := map[string]string{}
	annotations := map[string]string{}
	if inf := gw.Spec.Infrastructure; inf != nil {
		for k, v := range inf.Labels {
			labels[string(k)] = string(v)
		}
		for k, v := range inf.Annotations {
			annotations[string(k)] = string(v)
		}
	}
	// Ours win over the Gateway's infrastructure labels: the selector and
	// what the write-back recognizes as its own.
	labels[LabelManagedBy] = ManagedBy
	labels["app.kubernetes.io/name"] = "envoy"
	for k, v := range selector {
		labels[k] = v
	}
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name: name, Namespace: gw.Namespace, Labels: cloneMap(labels), Annotations: cloneMap(annotations),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: gwapiv1.GroupVersion.String(), Kind: "Gateway", Name: gw.Name, UID: gw.UID, Controller: ptr.To(true),
			}},
		}
	}
	id := ""
	if !p.XDS.Plaintext {
		id = IdentitySecretName(gw.Name, class)
	}
	files, err := bootstrapFiles(gw, p)
	if err != nil {
		return Objects{}, err
	}
	out := Objects{IdentitySecret: id}
	out.ServiceAccount = &corev1.ServiceAccount{TypeMeta: typeMeta("v1", "ServiceAccount"), ObjectMeta: meta(), AutomountServiceAccountToken: ptr.To(false)}
	out.ConfigMap = &corev1.ConfigMap{TypeMeta: typeMeta("v1", "ConfigMap"), ObjectMeta: meta(), Data: files}

	ports := listenerPorts(gw)
	var containerPorts []corev1.ContainerPort
	var servicePorts []corev1.ServicePort
	for _, lp := range ports {
		containerPorts = append(containerPorts, corev1.ContainerPort{Name: lp.name, ContainerPort: lp.port, Protocol: lp.protocol})
		servicePorts = append(servicePorts, corev1.ServicePort{Name: lp.name, Port: lp.port, TargetPort: intstr.FromInt32(lp.port), Protocol: lp.protocol})
	}
	containerPorts = append(containerPorts, corev1.ContainerPort{Name: "ready", ContainerPort: ReadyPort, Protocol: corev1.ProtocolTCP})

	volumes := []corev1.Volume{{Name: "bootstrap", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}}}
	mounts := []corev1.VolumeMount{{Name: "bootstrap", MountPath: bootstrapDir, ReadOnly: true}}
	if id != "" {
		volumes = append(volumes, corev1.Volume{Name: "xds-tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: id}}})
		mounts = append(mounts, corev1.VolumeMount{Name: "xds-tls", MountPath: identityDir, ReadOnly: true})
	}
	podAnnotations := cloneMap(annotations)
	podAnnotations["eastwest.io/bootstrap-hash"] = hashFiles(files)
	// Annotation-based scrapers find the Envoy's stats (the cross-cluster
	// traffic, docs/traffic.md) on the ready port.
	podAnnotations["prometheus.io/scrape"] = "true"
	podAnnotations["prometheus.io/port"] = strconv.Itoa(ReadyPort)
	podAnnotations["prometheus.io/path"] = "/stats/prometheus"
	depMeta := meta()
	if id != "" {
		depMeta.Annotations[AnnotationIdentity] = m.Identity(gw)
	}
	out.Deployment = &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: depMeta,
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(p.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: cloneMap(selector)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: cloneMap(labels), Annotations: podAnnotations},
				Spec: corev1.PodSpec{
					ServiceAccountName:           name,
					AutomountServiceAccountToken: ptr.To(false),
					NodeSelector:                 p.NodeSelector,
					Tolerations:                  p.Tolerations,
					SecurityContext: &corev1.PodSecurityContext{
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						// Envoy runs as a user and binds the listeners' ports,
						// 80 and 443 among them, with no capability.
						Sysctls: []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}},
					},
					Containers: []corev1.Container{{
						Name:            "envoy",
						Image:           p.Image,
						ImagePullPolicy: p.ImagePullPolicy,
						Args: []string{"-c", bootstrapDir + "/bootstrap.json", "--service-node", "$(POD_NAME)", "--service-cluster", m.ClusterID, "--service-zone", m.ClusterID,
							"--log-level", "warn", "--drain-time-s", "15"},
						Env:       []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
						Ports:     containerPorts,
						Resources: p.Resources,
						// Ready once eastwest's first listeners and clusters
						// are in (the admin's /ready, LIVE).
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(ReadyPort)}},
							PeriodSeconds: 2, FailureThreshold: 2,
						},
						SecurityContext: &corev1.SecurityContext{
							RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(envoyUID)), RunAsGroup: ptr.To(int64(envoyUID)),
							AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: mounts,
					}},
					Volumes: volumes,
					// Envoy drains its listeners for --drain-time-s.
					TerminationGracePeriodSeconds: ptr.To(int64(30)),
				},
			},
		},
	}
	svcMeta := meta()
	for k, v := range p.Service.Annotations {
		svcMeta.Annotations[k] = v
	}
	out.Service = &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: svcMeta,
		Spec: corev1.ServiceSpec{
			Type: p.Service.Type, Selector: cloneMap(selector), Ports: servicePorts,
			LoadBalancerSourceRanges: p.Service.LoadBalancerSourceRanges,
			ExternalTrafficPolicy:    p.Service.ExternalTrafficPolicy,
		},
	}
	if p.Replicas >= 2 {
		out.PodDisruptionBudget = &policyv1.PodDisruptionBudget{
			TypeMeta:   typeMeta("policy/v1", "PodDisruptionBudget"),
			ObjectMeta: meta(),
			Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: cloneMap(selector)}},
		}
	}
	return out, nil
}

type listenerPort struct {
	name     string
	port     int32
	protocol corev1.Protocol
}

// listenerPorts are the Gateway's distinct listener ports, sorted, each
// named after the first listener's protocol on it (http-80, https-443).
func listenerPorts(gw *gwapiv1.Gateway) []listenerPort {
	seen := map[int32]bool{}
	var out []listenerPort
	for _, l := range gw.Spec.Listeners {
		if seen[l.Port] {
			continue
		}
		seen[l.Port] = true
		proto := corev1.ProtocolTCP
		if l.Protocol == gwapiv1.UDPProtocolType {
			proto = corev1.ProtocolUDP
		}
		out = append(out, listenerPort{name: fmt.Sprintf("%s-%d", strings.ToLower(string(l.Protocol)), l.Port), port: l.Port, protocol: proto})
	}
	slices.SortFunc(out, func(a, b listenerPort) int { return int(a.port - b.port) })
	for i := range out {
		if len(validation.IsValidPortName(out[i].name)) > 0 {
			out[i].name = fmt.Sprintf("port-%d", out[i].port)
		}
	}
	return out
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// hashFiles is a short hash of the ConfigMap's files: on the pod template,
// so that a changed bootstrap rolls the Envoys.
func hashFiles(files map[string]string) string {
	h := sha256.New()
	b, _ := json.Marshal(files) // map keys sorted
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))[:16]
}
