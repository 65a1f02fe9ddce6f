package provision

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the group and version of eastwest's own resources.
var GroupVersion = schema.GroupVersion{Group: "eastwest.io", Version: "v1alpha1"}

// KindGatewayParameters is the kind a parametersRef names.
const KindGatewayParameters = "GatewayParameters"

// GatewayParameters tune the Envoys eastwest deploys for the Gateways of
// a GatewayClass (its spec.parametersRef, namespaced) or for one Gateway
// (its spec.infrastructure.parametersRef, in the Gateway's namespace; it
// wins over the class's, field by field). Every field is optional.
type GatewayParameters struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              GatewayParametersSpec   `json:"spec,omitempty"`
	Status            GatewayParametersStatus `json:"status,omitempty"`
}

// GatewayParametersSpec is what an operator may set.
type GatewayParametersSpec struct {
	// Image is the Envoy image (default DefaultImage: Envoy 1.40, the
	// version eastwest is built against).
	Image           string            `json:"image,omitempty"`
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// Replicas of the Envoy Deployment (default 2, with a
	// PodDisruptionBudget of minAvailable 1 when there are two or more).
	Replicas *int32 `json:"replicas,omitempty"`
	// Resources of the Envoy container (default: requests 100m CPU and
	// 128Mi memory, memory limit 512Mi).
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	// NodeSelector and Tolerations of the Envoy pods.
	NodeSelector map[string]string   `json:"nodeSelector,omitempty"`
	Tolerations  []corev1.Toleration `json:"tolerations,omitempty"`
	// Service in front of the Envoys.
	Service *ServiceParameters `json:"service,omitempty"`
	// XDS is how the Envoys reach eastwest.
	XDS *XDSParameters `json:"xds,omitempty"`
	// Identity is how the Envoys get the client certificate they present
	// to eastwest. Only a GatewayClass's parameters may set it.
	Identity *IdentityParameters `json:"identity,omitempty"`
}

// ServiceParameters shape the Service in front of a Gateway's Envoys.
type ServiceParameters struct {
	// Type is LoadBalancer by default; ClusterIP or NodePort otherwise.
	Type                     corev1.ServiceType                  `json:"type,omitempty"`
	Annotations              map[string]string                   `json:"annotations,omitempty"`
	LoadBalancerSourceRanges []string                            `json:"loadBalancerSourceRanges,omitempty"`
	ExternalTrafficPolicy    corev1.ServiceExternalTrafficPolicy `json:"externalTrafficPolicy,omitempty"`
}

// XDSParameters say where eastwest's xDS server is, seen from the
// Envoys' pods.
type XDSParameters struct {
	// Address is host:port of eastwest's xDS server (default
	// DefaultXDSAddress, the chart's control plane Service).
	Address string `json:"address,omitempty"`
	// ServerName is the name the control plane's serving certificate must
	// carry (default: Address's host).
	ServerName string `json:"serverName,omitempty"`
	// CABundle is the PEM of the CA that issued the control plane's
	// serving certificate (default: the ca.crt of the Envoys' own
	// identity Secret).
	CABundle string `json:"caBundle,omitempty"`
	// Plaintext drops TLS to the control plane: for a control plane on a
	// trusted network only (no identity is then presented or issued).
	Plaintext bool `json:"plaintext,omitempty"`
}

// IdentityParameters say how a Gateway's Envoys get their xDS client
// certificate, whose URI SAN names the member, the role gateway-api and
// the Gateway (spiffe://<trust domain>/clusterset/<set>/cluster/<id>/
// role/gateway-api/gateway/<ns>/<name>).
type IdentityParameters struct {
	// IssuerSecret names a kubernetes.io/tls Secret of the member cluster
	// holding the member's CA (tls.crt, tls.key): eastwest signs each
	// Gateway's certificate with it into the Secret <gateway>-<class>-xds
	// in the Gateway's namespace, and renews it. Empty: that Secret is
	// made by someone else (cert-manager, your PKI) and eastwest only
	// mounts it.
	IssuerSecret *SecretRef `json:"issuerSecret,omitempty"`
	// Duration of the certificates eastwest signs (default 720h; renewed
	// when a third of it is left).
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// SecretRef names a Secret.
type SecretRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// GatewayParametersStatus is written by eastwest's write-back leader.
type GatewayParametersStatus struct {
	// Conditions: Accepted (True, or False with reason Invalid and what
	// is wrong).
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// DeepCopyObject implements runtime.Object.
func (p *GatewayParameters) DeepCopyObject() runtime.Object {
	if p == nil {
		return nil
	}
	return p.DeepCopy()
}

// DeepCopy copies the parameters through their JSON form (a handful of
// objects, read rarely: no generated code for them).
func (p *GatewayParameters) DeepCopy() *GatewayParameters {
	if p == nil {
		return nil
	}
	out := &GatewayParameters{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(mustUnstructured(p), out); err != nil {
		panic(err)
	}
	return out
}

func mustUnstructured(p *GatewayParameters) map[string]any {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
	if err != nil {
		panic(err)
	}
	return u
}

var _ runtime.Object = (*GatewayParameters)(nil)
