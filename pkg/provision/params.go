package provision

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The defaults of GatewayParameters.
const (
	// DefaultImage is Envoy as eastwest is built and tested against.
	DefaultImage = "docker.io/envoyproxy/envoy:v1.40.0"
	// DefaultReplicas keep a Gateway up through a node's drain.
	DefaultReplicas int32 = 2
	// DefaultXDSAddress is the chart's control plane Service.
	DefaultXDSAddress = "eastwest.eastwest-system.svc:18000"
	// DefaultDuration of the Envoys' xDS client certificates.
	DefaultDuration = 720 * time.Hour
)

// Params are GatewayParameters resolved: the Gateway's over the class's,
// field by field, over the defaults, and checked.
type Params struct {
	Image           string
	ImagePullPolicy corev1.PullPolicy
	Replicas        int32
	Resources       corev1.ResourceRequirements
	NodeSelector    map[string]string
	Tolerations     []corev1.Toleration
	Service         ServiceParameters
	XDS             XDSParameters
	// XDSHost and XDSPort are XDS.Address split.
	XDSHost string
	XDSPort uint32
	// Issuer is the member's CA Secret eastwest signs with (nil: the
	// identity Secret is someone else's to make).
	Issuer   *SecretRef
	Duration time.Duration
}

// Resolve merges the class's parameters and the Gateway's (either may be
// nil) over the defaults and checks the result. An error says every field
// that is wrong; it is the parameters' Accepted=False message and the
// GatewayClass's or Gateway's InvalidParameters.
func Resolve(class, gateway *GatewayParameters) (Params, error) {
	p := Params{
		Image:           DefaultImage,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Replicas:        DefaultReplicas,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
		},
		Service:  ServiceParameters{Type: corev1.ServiceTypeLoadBalancer},
		XDS:      XDSParameters{Address: DefaultXDSAddress},
		Duration: DefaultDuration,
	}
	for _, gp := range []*GatewayParameters{class, gateway} {
		if gp != nil {
			p.merge(gp.Spec)
		}
	}
	err := p.check()
	if gateway != nil && gateway.Spec.Identity != nil {
		// The issuer is the class's (the cluster admin's) to name: a
		// namespace user's parameters naming a CA Secret would have
		// eastwest sign with a key they cannot read.
		err = errors.Join(err, errors.New("identity: set by the GatewayClass's parameters only, not a Gateway's"))
	}
	return p, err
}

// merge sets what s sets.
func (p *Params) merge(s GatewayParametersSpec) {
	if s.Image != "" {
		p.Image = s.Image
	}
	if s.ImagePullPolicy != "" {
		p.ImagePullPolicy = s.ImagePullPolicy
	}
	if s.Replicas != nil {
		p.Replicas = *s.Replicas
	}
	if s.Resources != nil {
		p.Resources = *s.Resources.DeepCopy()
	}
	if s.NodeSelector != nil {
		p.NodeSelector = s.NodeSelector
	}
	if s.Tolerations != nil {
		p.Tolerations = s.Tolerations
	}
	if sv := s.Service; sv != nil {
		if sv.Type != "" {
			p.Service.Type = sv.Type
		}
		if sv.Annotations != nil {
			p.Service.Annotations = sv.Annotations
		}
		if sv.LoadBalancerSourceRanges != nil {
			p.Service.LoadBalancerSourceRanges = sv.LoadBalancerSourceRanges
		}
		if sv.ExternalTrafficPolicy != "" {
			p.Service.ExternalTrafficPolicy = sv.ExternalTrafficPolicy
		}
	}
	if x := s.XDS; x != nil {
		if x.Address != "" {
			p.XDS.Address = x.Address
		}
		if x.ServerName != "" {
			p.XDS.ServerName = x.ServerName
		}
		if x.CABundle != "" {
			p.XDS.CABundle = x.CABundle
		}
		if x.Plaintext {
			p.XDS.Plaintext = true
		}
	}
	if id := s.Identity; id != nil {
		if id.IssuerSecret != nil {
			p.Issuer = id.IssuerSecret
		}
		if id.Duration != nil {
			p.Duration = id.Duration.Duration
		}
	}
}

// check validates the resolved parameters, and splits the xDS address.
func (p *Params) check() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if p.Replicas < 0 {
		bad("replicas %d: negative", p.Replicas)
	}
	switch p.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		bad("imagePullPolicy %q: not Always, IfNotPresent or Never", p.ImagePullPolicy)
	}
	switch p.Service.Type {
	case corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeNodePort, corev1.ServiceTypeClusterIP:
	default:
		bad("service.type %q: not LoadBalancer, NodePort or ClusterIP", p.Service.Type)
	}
	switch p.Service.ExternalTrafficPolicy {
	case "", corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal:
		if p.Service.ExternalTrafficPolicy != "" && p.Service.Type == corev1.ServiceTypeClusterIP {
			bad("service.externalTrafficPolicy: only for LoadBalancer and NodePort Services")
		}
	default:
		bad("service.externalTrafficPolicy %q: not Cluster or Local", p.Service.ExternalTrafficPolicy)
	}
	for _, r := range p.Service.LoadBalancerSourceRanges {
		if _, _, err := net.ParseCIDR(r); err != nil {
			bad("service.loadBalancerSourceRanges: %q is not a CIDR", r)
		}
	}
	host, port, err := net.SplitHostPort(p.XDS.Address)
	n, perr := strconv.ParseUint(port, 10, 16)
	switch {
	case err != nil:
		bad("xds.address %q: not host:port", p.XDS.Address)
	case perr != nil || n == 0:
		bad("xds.address %q: the port is not 1-65535", p.XDS.Address)
	case net.ParseIP(host) == nil && len(validation.IsDNS1123Subdomain(host)) > 0:
		bad("xds.address %q: the host is neither an IP address nor a DNS name", p.XDS.Address)
	default:
		p.XDSHost, p.XDSPort = host, uint32(n)
	}
	if p.XDS.ServerName == "" {
		p.XDS.ServerName = p.XDSHost
	}
	if p.Issuer != nil && (p.Issuer.Name == "" || p.Issuer.Namespace == "") {
		bad("identity.issuerSecret: name and namespace are both needed")
	}
	if p.Duration < time.Hour {
		bad("identity.duration %v: less than an hour", p.Duration)
	}
	if p.XDS.Plaintext && p.Issuer != nil {
		bad("xds.plaintext with identity.issuerSecret: a plaintext connection presents no certificate")
	}
	return errors.Join(errs...)
}
