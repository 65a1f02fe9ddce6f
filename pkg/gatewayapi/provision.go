package gatewayapi

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/eastwest-dev/eastwest/pkg/provision"
)

// Provision is one Gateway whose Envoys eastwest deploys (GEP-1762): the
// Gateway, its class and its resolved parameters. The write-back leader
// of the member renders and applies them (pkg/provision).
type Provision struct {
	Gateway *gwapiv1.Gateway
	Class   string
	Params  provision.Params
	// Keep is set when the Gateway's parameters (or its class's) cannot
	// be used now: what was deployed for it stays as it is, neither
	// changed nor deleted, until they can.
	Keep bool
}

// parameters makes every GatewayParameters' status: Accepted when they
// can be used as they are (a Gateway's may still not set identity: its
// own status says so), else False with reason Invalid and every mistake.
func (b *builder) parameters() {
	for _, key := range sortedKeys(b.in.Parameters) {
		p := b.in.Parameters[key]
		c := cond("Accepted", "Accepted", true, p.Generation, "")
		if _, err := provision.Resolve(p, nil); err != nil {
			c = cond("Accepted", "Invalid", false, p.Generation, err.Error())
		}
		b.res.Statuses = append(b.res.Statuses, Status{Kind: provision.KindGatewayParameters, Namespace: key.Namespace, Name: key.Name, Generation: p.Generation,
			Parameters: &provision.GatewayParametersStatus{Conditions: []metav1.Condition{c}}})
	}
}

// classParameters is the GatewayParameters a class names (nil when it
// names none); an error says why the reference cannot be used.
func (b *builder) classParameters(gc *gwapiv1.GatewayClass) (*provision.GatewayParameters, error) {
	ref := gc.Spec.ParametersRef
	if ref == nil {
		return nil, nil
	}
	if string(ref.Group) != provision.GroupVersion.Group || string(ref.Kind) != provision.KindGatewayParameters {
		return nil, fmt.Errorf("parametersRef names a %s: eastwest takes %s (%s) only", kindName(ref.Group, ref.Kind), provision.KindGatewayParameters, provision.GroupVersion.Group)
	}
	if ref.Namespace == nil || *ref.Namespace == "" {
		return nil, fmt.Errorf("parametersRef %s: GatewayParameters are namespaced: give the namespace", ref.Name)
	}
	key := types.NamespacedName{Namespace: string(*ref.Namespace), Name: ref.Name}
	p := b.in.Parameters[key]
	if p == nil {
		return nil, fmt.Errorf("parametersRef: GatewayParameters %s not found", key)
	}
	if _, err := provision.Resolve(p, nil); err != nil {
		return nil, fmt.Errorf("GatewayParameters %s: %w", key, err)
	}
	return p, nil
}

// gatewayParameters resolves a Gateway's parameters: its own
// (spec.infrastructure.parametersRef, in its namespace) over its class's.
func (b *builder) gatewayParameters(gw *gwapiv1.Gateway) (provision.Params, error) {
	class := b.classParams[string(gw.Spec.GatewayClassName)]
	var own *provision.GatewayParameters
	if inf := gw.Spec.Infrastructure; inf != nil && inf.ParametersRef != nil {
		ref := inf.ParametersRef
		if string(ref.Group) != provision.GroupVersion.Group || string(ref.Kind) != provision.KindGatewayParameters {
			return provision.Params{}, fmt.Errorf("infrastructure.parametersRef names a %s: eastwest takes %s (%s) only", kindName(ref.Group, ref.Kind), provision.KindGatewayParameters, provision.GroupVersion.Group)
		}
		key := types.NamespacedName{Namespace: gw.Namespace, Name: ref.Name}
		if own = b.in.Parameters[key]; own == nil {
			return provision.Params{}, fmt.Errorf("infrastructure.parametersRef: GatewayParameters %s not found", key)
		}
	}
	return provision.Resolve(class, own)
}

// kindName is a kind with its group, when it has one (ConfigMap,
// Foo.example.com).
func kindName(group gwapiv1.Group, kind gwapiv1.Kind) string {
	if group == "" {
		return string(kind)
	}
	return string(kind) + "." + string(group)
}
