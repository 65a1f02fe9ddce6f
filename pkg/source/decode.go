package source

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/pkg/about"
	"github.com/eastwest-dev/eastwest/pkg/event"
)

// Problem is one thing wrong with one document of one file. The document
// index counts from 1, as editors and kubectl show them; 0 means the whole
// file.
type Problem struct {
	File   string
	Doc    int
	Object string // kind namespace/name, when known
	Err    string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Doc > 0 {
		fmt.Fprintf(&b, ": document %d", p.Doc)
	}
	if p.Object != "" {
		fmt.Fprintf(&b, " (%s)", p.Object)
	}
	b.WriteString(": ")
	b.WriteString(p.Err)
	return b.String()
}

// Object is one valid object read from a file.
type Object struct {
	// Key identifies the object within its member cluster.
	Key ObjectKey
	Obj metav1.Object
	// Doc is the document's index in its file, from 1.
	Doc int
	// Hash changes whenever the document's content does.
	Hash string
}

// ObjectKey identifies an object within one member cluster. Both versions
// of ServiceExport share a key: they are the same object.
type ObjectKey struct {
	Kind      schema.GroupKind
	Namespace string
	Name      string
}

func (k ObjectKey) String() string {
	if k.Namespace == "" {
		return k.Kind.Kind + " " + k.Name
	}
	return k.Kind.Kind + " " + k.Namespace + "/" + k.Name
}

// gvList is a List of objects in the folder (not a kind of its own).
var gvList = schema.GroupVersionKind{Version: "v1", Kind: "List"}

// supportedKinds is named in the error for an unknown kind.
const supportedKinds = "v1 Namespace, v1 Service, discovery.k8s.io/v1 EndpointSlice, multicluster.x-k8s.io/v1alpha1 or v1beta1 ServiceExport, about.k8s.io/v1alpha1 ClusterProperty, gateway.networking.k8s.io/v1 GatewayClass, Gateway, HTTPRoute or GRPCRoute, gateway.networking.k8s.io/v1 or v1beta1 ReferenceGrant, v1 Secret of type kubernetes.io/tls, v1 List"

// Decode reads a stream of YAML (or JSON) documents as kubectl apply would
// and returns every valid object and a Problem for every document that
// cannot be used. It never panics, whatever the input.
func Decode(file string, data []byte) ([]Object, []Problem) {
	var objs []Object
	var probs []Problem
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			probs = append(probs, Problem{File: file, Doc: doc, Err: "cannot split documents: " + err.Error()})
			break
		}
		if isEmptyDoc(raw) {
			doc--
			continue
		}
		o, p := decodeDoc(file, doc, raw)
		objs = append(objs, o...)
		probs = append(probs, p...)
	}
	return objs, probs
}

// isEmptyDoc reports whether a document holds only comments and blanks
// (a leading or trailing "---", say); such documents are not counted.
func isEmptyDoc(raw []byte) bool {
	for line := range bytes.SplitSeq(raw, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && !bytes.Equal(line, []byte("---")) {
			return false
		}
	}
	return true
}

func decodeDoc(file string, doc int, raw []byte) ([]Object, []Problem) {
	prob := func(obj, msg string) []Problem { return []Problem{{File: file, Doc: doc, Object: obj, Err: msg}} }
	// YAML is parsed once, into JSON, strictly (a key twice in a mapping
	// is an error, as with kubectl --validate=strict); everything after
	// reads the JSON. (Parsing the JSON again as YAML, as yaml.Unmarshal
	// does, tripled the cost of a start-up with 10,000 services.)
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		return nil, prob("", "not valid YAML: "+err.Error())
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, prob("", "not a Kubernetes object: "+err.Error())
	}
	gvk := tm.GroupVersionKind()
	if gvk.Kind == "" || tm.APIVersion == "" {
		return nil, prob("", "apiVersion and kind are required")
	}
	if gvk == gvList {
		return decodeList(file, doc, js)
	}
	o, err := decodeObject(gvk, js)
	if err != nil {
		return nil, prob(describe(gvk, js), err.Error())
	}
	return []Object{{Key: keyOf(gvk, o), Obj: o, Doc: doc, Hash: hashOf(js)}}, nil
}

// decodeList reads a v1 List as kubectl does: each item an object of its
// own, reported under the list's document.
func decodeList(file string, doc int, js []byte) ([]Object, []Problem) {
	var list struct {
		Items []rawJSON `json:"items"`
	}
	if err := json.Unmarshal(js, &list); err != nil {
		return nil, []Problem{{File: file, Doc: doc, Object: "List", Err: err.Error()}}
	}
	var objs []Object
	var probs []Problem
	for i, item := range list.Items {
		var tm metav1.TypeMeta
		err := json.Unmarshal(item, &tm)
		gvk := tm.GroupVersionKind()
		if err == nil && gvk == gvList {
			err = errors.New("a List inside a List is not supported")
		}
		var o metav1.Object
		if err == nil {
			o, err = decodeObject(gvk, item)
		}
		if err != nil {
			probs = append(probs, Problem{File: file, Doc: doc, Object: strings.TrimSpace(fmt.Sprintf("List item %d %s", i, describe(gvk, item))), Err: err.Error()})
			continue
		}
		objs = append(objs, Object{Key: keyOf(gvk, o), Obj: o, Doc: doc, Hash: hashOf(item)})
	}
	return objs, probs
}

// rawJSON keeps a List item's bytes for a second pass.
type rawJSON []byte

func (r *rawJSON) UnmarshalJSON(b []byte) error { *r = append((*r)[:0], b...); return nil }

// decodeObject decodes one object strictly (an unknown or duplicated field
// is an error, as with kubectl's default --validate=strict) and validates
// it.
func decodeObject(gvk schema.GroupVersionKind, js []byte) (metav1.Object, error) {
	k, ok := event.KindFor(gvk)
	if !ok {
		return nil, fmt.Errorf("unsupported kind %s %s (supported: %s)", gvk.GroupVersion(), gvk.Kind, supportedKinds)
	}
	o := k.New()
	if err := decodeStrict(js, o); err != nil {
		return nil, fmt.Errorf("cannot decode: %w", err)
	}
	if namespaced(gvk) && o.GetNamespace() == "" {
		o.SetNamespace(metav1.NamespaceDefault)
	}
	if sec, ok := o.(*corev1.Secret); ok && len(sec.StringData) > 0 {
		// As the apiserver does: stringData is written into data.
		if sec.Data == nil {
			sec.Data = map[string][]byte{}
		}
		for k, v := range sec.StringData {
			sec.Data[k] = []byte(v)
		}
		sec.StringData = nil
	}
	if err := validate(o); err != nil {
		return nil, err
	}
	return o, nil
}

// decodeStrict decodes one JSON object, refusing unknown fields and
// anything after the object.
func decodeStrict(js []byte, o any) error {
	d := json.NewDecoder(bytes.NewReader(js))
	d.DisallowUnknownFields()
	if err := d.Decode(o); err != nil {
		return err
	}
	if d.More() {
		return errors.New("unexpected data after the object")
	}
	return nil
}

func namespaced(gvk schema.GroupVersionKind) bool {
	k, _ := event.KindFor(gvk)
	return k.Namespaced
}

func keyOf(gvk schema.GroupVersionKind, o metav1.Object) ObjectKey {
	return ObjectKey{Kind: gvk.GroupKind(), Namespace: o.GetNamespace(), Name: o.GetName()}
}

// describe names the object of a document that could not be used, as well
// as its metadata can be read.
func describe(gvk schema.GroupVersionKind, js []byte) string {
	if gvk.Kind == "" {
		return ""
	}
	var meta struct {
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if json.Unmarshal(js, &meta) != nil || meta.Metadata.Name == "" {
		return gvk.Kind
	}
	ns := meta.Metadata.Namespace
	if ns == "" && namespaced(gvk) {
		ns = metav1.NamespaceDefault
	}
	return ObjectKey{Kind: gvk.GroupKind(), Namespace: ns, Name: meta.Metadata.Name}.String()
}

// validate applies the apiserver's validation of the fields eastwest reads,
// so that the YAML folder refuses what a cluster would refuse.
func validate(o metav1.Object) error {
	var errs []error
	check := func(field string, msgs []string) {
		for _, m := range msgs {
			errs = append(errs, fmt.Errorf("%s: %s", field, m))
		}
	}
	name := o.GetName()
	if name == "" {
		return errors.New("metadata.name is required")
	}
	// The apiserver's limits on every object's metadata: what the folder
	// accepts, a cluster accepts (annotations of at most 256 KiB in all,
	// qualified label keys and values of at most 63 characters).
	for _, e := range apivalidation.ValidateAnnotations(o.GetAnnotations(), field.NewPath("metadata", "annotations")) {
		errs = append(errs, errors.New(e.Error()))
	}
	for _, e := range metav1validation.ValidateLabels(o.GetLabels(), field.NewPath("metadata", "labels")) {
		errs = append(errs, errors.New(e.Error()))
	}
	if ns := o.GetNamespace(); ns != "" {
		check("metadata.namespace", validation.IsDNS1123Label(ns))
	}
	if k, ok := event.KindOf(o); ok {
		check("metadata.name", k.ValidName(name))
		if !k.Namespaced && o.GetNamespace() != "" {
			errs = append(errs, fmt.Errorf("metadata.namespace: a %s is cluster-scoped", k.GVK.Kind))
		}
	}
	switch o := o.(type) {
	case *about.ClusterProperty:
		if o.Spec.Value == "" {
			errs = append(errs, errors.New("spec.value is required"))
		}
	case *corev1.Service:
		errs = append(errs, validateService(o)...)
	case *discoveryv1.EndpointSlice:
		errs = append(errs, validateSlice(o)...)
	case *gwapiv1.HTTPRoute:
		if len(o.Spec.ParentRefs) == 0 {
			errs = append(errs, errors.New("spec.parentRefs: at least one parent is required"))
		}
	case *gwapiv1.GRPCRoute:
		if len(o.Spec.ParentRefs) == 0 {
			errs = append(errs, errors.New("spec.parentRefs: at least one parent is required"))
		}
	case *gwapiv1.GatewayClass:
		if o.Spec.ControllerName == "" {
			errs = append(errs, errors.New("spec.controllerName is required"))
		}
	case *gwapiv1.Gateway:
		if o.Spec.GatewayClassName == "" {
			errs = append(errs, errors.New("spec.gatewayClassName is required"))
		}
		if len(o.Spec.Listeners) == 0 {
			errs = append(errs, errors.New("spec.listeners: at least one listener is required"))
		}
		seen := map[gwapiv1.SectionName]bool{}
		for i, l := range o.Spec.Listeners {
			if l.Port < 1 || l.Port > 65535 {
				errs = append(errs, fmt.Errorf("spec.listeners[%d].port %d: must be 1-65535", i, l.Port))
			}
			if seen[l.Name] {
				errs = append(errs, fmt.Errorf("spec.listeners[%d].name %q: listener names must be unique", i, l.Name))
			}
			seen[l.Name] = true
		}
	case *gwapiv1.ReferenceGrant:
		if len(o.Spec.From) == 0 || len(o.Spec.To) == 0 {
			errs = append(errs, errors.New("spec.from and spec.to need at least one entry each"))
		}
	case *corev1.Secret:
		if o.Type != corev1.SecretTypeTLS {
			errs = append(errs, fmt.Errorf("type %q: only Secrets of type kubernetes.io/tls (Gateway certificates) are read", o.Type))
		}
	}
	return errors.Join(errs...)
}

func validateService(s *corev1.Service) []error {
	var errs []error
	switch s.Spec.Type {
	case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
	case corev1.ServiceTypeExternalName:
		if s.Spec.ExternalName == "" {
			errs = append(errs, errors.New("spec.externalName is required for type ExternalName"))
		}
	default:
		errs = append(errs, fmt.Errorf("spec.type: unsupported value %q", s.Spec.Type))
	}
	if ip := s.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
		if _, err := netip.ParseAddr(ip); err != nil {
			errs = append(errs, fmt.Errorf("spec.clusterIP: %q is neither an IP nor None", ip))
		}
	}
	if len(s.Spec.Ports) == 0 && s.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.ClusterIP != corev1.ClusterIPNone {
		errs = append(errs, errors.New("spec.ports: at least one port is required"))
	}
	names := map[string]bool{}
	for i, p := range s.Spec.Ports {
		f := fmt.Sprintf("spec.ports[%d]", i)
		if len(s.Spec.Ports) > 1 && p.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: required when a Service has more than one port", f))
		}
		if p.Name != "" {
			for _, m := range validation.IsDNS1123Label(p.Name) {
				errs = append(errs, fmt.Errorf("%s.name: %s", f, m))
			}
			if names[p.Name] {
				errs = append(errs, fmt.Errorf("%s.name: duplicate %q", f, p.Name))
			}
			names[p.Name] = true
		}
		errs = append(errs, validatePort(f, p.Port, p.Protocol)...)
	}
	for i, fam := range s.Spec.IPFamilies {
		if fam != corev1.IPv4Protocol && fam != corev1.IPv6Protocol {
			errs = append(errs, fmt.Errorf("spec.ipFamilies[%d]: unsupported value %q", i, fam))
		}
	}
	switch a := s.Spec.SessionAffinity; a {
	case "", corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP:
	default:
		errs = append(errs, fmt.Errorf("spec.sessionAffinity: unsupported value %q", a))
	}
	return errs
}

func validatePort(field string, port int32, proto corev1.Protocol) []error {
	var errs []error
	for _, m := range validation.IsValidPortNum(int(port)) {
		errs = append(errs, fmt.Errorf("%s.port: %s", field, m))
	}
	switch proto {
	case "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
	default:
		errs = append(errs, fmt.Errorf("%s.protocol: unsupported value %q", field, proto))
	}
	return errs
}

func validateSlice(es *discoveryv1.EndpointSlice) []error {
	var errs []error
	switch es.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
	default:
		errs = append(errs, fmt.Errorf("addressType: unsupported value %q", es.AddressType))
	}
	for i, p := range es.Ports {
		f := fmt.Sprintf("ports[%d]", i)
		if p.Port != nil {
			errs = append(errs, validatePort(f, *p.Port, ptr.Deref(p.Protocol, ""))...)
		}
		if p.Name != nil && *p.Name != "" {
			for _, m := range validation.IsDNS1123Label(*p.Name) {
				errs = append(errs, fmt.Errorf("%s.name: %s", f, m))
			}
		}
	}
	for i, e := range es.Endpoints {
		f := fmt.Sprintf("endpoints[%d]", i)
		if len(e.Addresses) == 0 {
			errs = append(errs, fmt.Errorf("%s.addresses: at least one address is required", f))
		}
		for j, a := range e.Addresses {
			if err := validAddress(es.AddressType, a); err != nil {
				errs = append(errs, fmt.Errorf("%s.addresses[%d]: %w", f, j, err))
			}
		}
	}
	return errs
}

func validAddress(t discoveryv1.AddressType, a string) error {
	if t == discoveryv1.AddressTypeFQDN {
		if msgs := validation.IsDNS1123Subdomain(a); len(msgs) > 0 {
			return errors.New(msgs[0])
		}
		return nil
	}
	ip, err := netip.ParseAddr(a)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not an IP address", a)
	case t == discoveryv1.AddressTypeIPv4 && !ip.Is4():
		return fmt.Errorf("%q is not an IPv4 address", a)
	case t == discoveryv1.AddressTypeIPv6 && !ip.Is6():
		return fmt.Errorf("%q is not an IPv6 address", a)
	}
	return nil
}
