package source

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Decode accepts what kubectl apply accepts and names the file, document and
// reason of everything it refuses, keeping every other document.
func TestDecodeReportsProblemsPerDocument(t *testing.T) {
	tests := map[string]struct {
		in       string
		objects  []string // ObjectKey strings of the valid objects, in order
		problems []string // substrings of the problems, in order
		ignored  []string // substrings of the documents ignored (kinds eastwest does not read)
	}{
		"multi-document with comments and empty docs": {
			in:      "---\n# a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ns}\nspec: {ports: [{port: 80}]}\n---\n",
			objects: []string{"Namespace ns", "Service ns/web"},
		},
		"default namespace": {
			in:      "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: web}\n",
			objects: []string{"ServiceExport default/web"},
		},
		"both export versions share a kind": {
			in:      "apiVersion: multicluster.x-k8s.io/v1beta1\nkind: ServiceExport\nmetadata: {name: web, namespace: ns}\nspec: {exportedLabels: {a: b}}\n",
			objects: []string{"ServiceExport ns/web"},
		},
		"a kind eastwest does not read is ignored, not a problem": {
			in:      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: c}\n",
			objects: []string{"Namespace ns"},
			ignored: []string{"f.yaml:1: document 1 (Deployment d): ignored: eastwest does not read this kind (apps/v1 Deployment)", "f.yaml:9: document 3 (Certificate c)"},
		},
		"a misspelt kind in a group eastwest reads is a problem": {
			in:       "apiVersion: v1\nkind: Servce\nmetadata: {name: web}\n---\napiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExprot\nmetadata: {name: web}\n",
			problems: []string{"f.yaml:1: document 1 (Servce web): unknown kind v1 Servce (supported:", "f.yaml:5: document 2 (ServiceExprot web): unknown kind multicluster.x-k8s.io/v1alpha1 ServiceExprot"},
		},
		"another version of a kind eastwest reads is a problem": {
			in:       "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: HTTPRoute\nmetadata: {name: r}\n",
			problems: []string{"unsupported version gateway.networking.k8s.io/v1alpha2 of HTTPRoute"},
		},
		"bad port": {
			in:       "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 70000}]}\n",
			problems: []string{"document 1 (Service default/web): spec.ports[0].port: must be between 1 and 65535"},
		},
		"bad name": {
			in:       "apiVersion: v1\nkind: Service\nmetadata: {name: Web_1}\nspec: {ports: [{port: 80}]}\n",
			problems: []string{"(Service default/Web_1): metadata.name"},
		},
		"unknown field is refused like kubectl --validate=strict, by its path": {
			in:       "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {prots: [{port: 80}], ports: [{port: 80, portz: x}]}\n",
			problems: []string{`(Service default/web): cannot decode: unknown field "spec.ports[0].portz"` + "\n" + `unknown field "spec.prots"`},
		},
		"field names match case-sensitively, as the apiserver's": {
			in:       "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nSpec: {ports: [{port: 80}]}\n",
			problems: []string{`cannot decode: unknown field "Spec"`},
		},
		"a YAML error names the file's line, not the document's": {
			in:       "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n---\n# the second\napiVersion: v1\nkind: Service\nmetadata: {name: web\nspec: {}\n",
			objects:  []string{"Namespace ns"},
			problems: []string{"f.yaml:5: document 2: not valid YAML: yaml: line 8:"},
		},
		"a field twice is refused like kubectl --validate=strict": {
			in:       "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}], ports: [{port: 81}]}\n",
			problems: []string{`key "ports" already set in map`},
		},
		"broken yaml in the second document": {
			in:       "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n---\nkind: [\n",
			objects:  []string{"Namespace ns"},
			problems: []string{"document 2: not valid YAML"},
		},
		"annotations over the apiserver's 256 KiB": {
			in:       "apiVersion: v1\nkind: Service\nmetadata: {name: web, annotations: {big: \"" + strings.Repeat("x", 256<<10) + "\"}}\nspec: {ports: [{port: 80}]}\n",
			problems: []string{"(Service default/web): metadata.annotations: Too long: may not be more than 262144 bytes"},
		},
		"label value that a cluster refuses": {
			in:       "apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: {app: \"not a value!\"}}\nspec: {ports: [{port: 80}]}\n",
			problems: []string{"(Service default/web): metadata.labels: Invalid value"},
		},
		"a Secret without a type is Opaque, not a certificate": {
			in:       "apiVersion: v1\nkind: Secret\nmetadata: {name: c, namespace: ns}\nstringData: {tls.crt: \"x\", tls.key: \"z\"}\n",
			problems: []string{`(Secret ns/c): type "": only Secrets of type kubernetes.io/tls`},
		},
		"a cluster-scoped kind with a namespace": {
			in:       "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: gc, namespace: ns}\nspec: {controllerName: eastwest.io/gateway-controller}\n",
			problems: []string{"metadata.namespace: a GatewayClass is cluster-scoped"},
		},
		"missing kind": {
			in:       "metadata: {name: x}\n",
			problems: []string{"document 1: apiVersion and kind are required"},
		},
		"bad endpoint address": {
			in:       "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1}\naddressType: IPv4\nendpoints: [{addresses: [\"fd00::1\"]}]\n",
			problems: []string{`endpoints[0].addresses[0]: "fd00::1" is not an IPv4 address`},
		},
		"list items": {
			in:      "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n- {apiVersion: v1, kind: Pod, metadata: {name: p}}\n",
			objects: []string{"Namespace a"},
			ignored: []string{"document 1 (List item 1 Pod p): ignored"},
		},
		"multi-port service needs names": {
			in:       "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}, {port: 81}]}\n",
			problems: []string{"spec.ports[0].name: required when a Service has more than one port"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			objs, probs := Decode("f.yaml", []byte(tc.in))
			var got []string
			for _, o := range objs {
				got = append(got, o.Key.String())
			}
			if strings.Join(got, ",") != strings.Join(tc.objects, ",") {
				t.Errorf("objects %v, want %v", got, tc.objects)
			}
			var problems, ignored []Problem
			for _, p := range probs {
				if p.Ignored {
					ignored = append(ignored, p)
				} else {
					problems = append(problems, p)
				}
			}
			for _, c := range []struct {
				what      string
				got       []Problem
				wantParts []string
			}{{"problems", problems, tc.problems}, {"ignored", ignored, tc.ignored}} {
				if len(c.got) != len(c.wantParts) {
					t.Fatalf("%s %v, want %d", c.what, c.got, len(c.wantParts))
				}
				for i, p := range c.got {
					if !strings.Contains(p.String(), c.wantParts[i]) {
						t.Errorf("%s %q does not contain %q", c.what, p, c.wantParts[i])
					}
				}
			}
		})
	}
}

// Objects keep every field the merge reads.
func TestDecodeKeepsFields(t *testing.T) {
	objs, probs := Decode("f.yaml", []byte(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  clusterIP: None
  sessionAffinity: ClientIP
  ports: [{name: http, port: 80, protocol: UDP}]
`))
	if len(probs) > 0 || len(objs) != 1 {
		t.Fatalf("objs %v probs %v", objs, probs)
	}
	svc := objs[0].Obj.(*corev1.Service)
	if svc.Spec.ClusterIP != "None" || svc.Spec.SessionAffinity != "ClientIP" || svc.Spec.Ports[0].Protocol != "UDP" || svc.CreationTimestamp.IsZero() {
		t.Errorf("decoded %+v", svc.Spec)
	}
}

// FuzzDecode: no input makes Decode panic, every object it returns is
// valid, and every problem names its file.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n"))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Namespace, metadata: {name: a}}]\n"))
	f.Add([]byte("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\nports: [{port: 1}]\nendpoints: [{addresses: [1.2.3.4]}]\n---\n{}"))
	f.Add([]byte("apiVersion: about.k8s.io/v1alpha1\nkind: ClusterProperty\nmetadata: {name: cluster.clusterset.k8s.io}\nspec: {value: a}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, probs := Decode("fuzz.yaml", data)
		for _, o := range objs {
			if err := validate(o.Obj); err != nil {
				t.Errorf("returned an invalid object %s: %v", o.Key, err)
			}
		}
		for _, p := range probs {
			if p.File != "fuzz.yaml" || p.Err == "" {
				t.Errorf("problem without file or reason: %+v", p)
			}
		}
	})
}
