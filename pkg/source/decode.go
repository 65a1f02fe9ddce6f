package source

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strconv"
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
	kscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwscheme "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/scheme"
	kjson "sigs.k8s.io/json"
	mcsscheme "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned/scheme"
	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/pkg/about"
	"github.com/eastwest-dev/eastwest/pkg/event"
)

// Problem is one thing wrong with one document of one file. The document
// index counts from 1, as editors and kubectl show them; 0 means the whole
// file.
type Problem struct {
	File string
	// Line is the document's first line in the file (from 1; 0: unknown).
	Line   int
	Doc    int
	Object string // kind namespace/name, when known
	Err    string
	// Ignored marks a document of a kind eastwest does not read (a
	// Deployment in a folder of real manifests): not a problem, reported
	// at debug level only.
	Ignored bool
}

// String is "file:line: document N (object): reason", the file:line
// prefix editors and terminals jump to.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
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
	// Doc is the document's index in its file, from 1; Line its first
	// line in the file.
	Doc  int
	Line int
	// Hash changes whenever the document's content does.
	Hash string
	// File is the file the object was read from (set by Dir).
	File string
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
var supportedKinds = event.Supported() + ", v1 List"

// Decode reads a stream of YAML (or JSON) documents as kubectl apply would
// and returns every valid object and a Problem for every document that
// cannot be used. It never panics, whatever the input.
func Decode(file string, data []byte) ([]Object, []Problem) {
	var objs []Object
	var probs []Problem
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	// pos and line follow the documents through data, so that a problem
	// names the line its document starts at in the file, and a YAML
	// error's line counts from the file's first line, not the document's.
	pos, line := 0, 1
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			probs = append(probs, Problem{File: file, Line: line, Doc: doc, Err: "cannot split documents: " + err.Error()})
			break
		}
		// The reader returns a document's lines as they are in data,
		// after the separators before it.
		if i := bytes.Index(data[pos:], raw); i >= 0 {
			line += bytes.Count(data[pos:pos+i], []byte("\n"))
			pos += i
		}
		start := line
		line += bytes.Count(raw, []byte("\n"))
		pos += len(raw)
		if isEmptyDoc(raw) {
			doc--
			continue
		}
		o, p := decodeDoc(file, doc, raw)
		for i := range o {
			o[i].Line = start
		}
		for i := range p {
			p[i].Line = start
			if !p[i].Ignored {
				p[i].Err = fileLines(p[i].Err, start)
			}
		}
		objs = append(objs, o...)
		probs = append(probs, p...)
	}
	return objs, probs
}

// yamlLine is how YAML errors name a line: of the document they parsed.
var yamlLine = regexp.MustCompile(`\bline (\d+)\b`)

// fileLines renumbers a YAML error's lines from the document's to the
// file's (the document starting at line start).
func fileLines(msg string, start int) string {
	if start <= 1 || !strings.Contains(msg, "line ") {
		return msg
	}
	return yamlLine.ReplaceAllStringFunc(msg, func(m string) string {
		n, err := strconv.Atoi(m[len("line "):])
		if err != nil {
			return m
		}
		return "line " + strconv.Itoa(n+start-1)
	})
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
		p := prob(describe(gvk, js), err.Error())
		p[0].Ignored = errors.Is(err, errNotRead)
		return nil, p
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
			probs = append(probs, Problem{File: file, Doc: doc, Object: strings.TrimSpace(fmt.Sprintf("List item %d %s", i, describe(gvk, item))), Err: err.Error(),
				Ignored: errors.Is(err, errNotRead)})
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
		return nil, notRead(gvk)
	}
	o := k.New()
	if err := decodeStrict(js, o); err != nil {
		return nil, err
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

// decodeStrict decodes one JSON object as the apiserver does: field
// names match case-sensitively, and an unknown or duplicated field is an
// error naming its path (spec.selectr), as with kubectl's default
// --validate=strict.
func decodeStrict(js []byte, o any) error {
	strict, err := kjson.UnmarshalStrict(js, o)
	if err != nil {
		return fmt.Errorf("cannot decode: %w", err)
	}
	if len(strict) > 0 {
		return fmt.Errorf("cannot decode: %w", errors.Join(strict...))
	}
	return nil
}

// errNotRead marks a document of a kind eastwest does not read.
var errNotRead = errors.New("ignored: eastwest does not read this kind")

// notRead is the error for a kind eastwest does not read: ignored
// (errNotRead) when it is a kind of its own (a Deployment, another
// project's resource), a problem when it looks like a mistake: another
// version of a kind eastwest reads, or a kind unknown in an API group
// eastwest reads (a misspelt kind: v1 Servce).
func notRead(gvk schema.GroupVersionKind) error {
	for _, k := range event.Kinds {
		if k.GVK.GroupKind() == gvk.GroupKind() {
			return fmt.Errorf("unsupported version %s of %s (supported: %s)", gvk.GroupVersion(), gvk.Kind, supportedKinds)
		}
	}
	if readGroups[gvk.Group] && !knownKind(gvk) {
		return fmt.Errorf("unknown kind %s %s (supported: %s)", gvk.GroupVersion(), gvk.Kind, supportedKinds)
	}
	return fmt.Errorf("%w (%s %s)", errNotRead, gvk.GroupVersion(), gvk.Kind)
}

// readGroups are the API groups of the kinds eastwest reads.
var readGroups = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range event.Kinds {
		m[k.GVK.Group] = true
	}
	return m
}()

// knownKind reports whether a kind is one Kubernetes, Gateway API or
// the MCS API defines.
func knownKind(gvk schema.GroupVersionKind) bool {
	return kscheme.Scheme.Recognizes(gvk) || gwscheme.Scheme.Recognizes(gvk) || mcsscheme.Scheme.Recognizes(gvk)
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
