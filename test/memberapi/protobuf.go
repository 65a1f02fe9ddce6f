package memberapi

import (
	"bytes"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
)

// Answers in protobuf, as the apiserver gives them to a client that asks
// for it (client-go's core clients do, eastwest's among them) for
// Kubernetes' built-in kinds; custom resources are JSON whatever the
// client asks, as with the apiserver. Without this a client's decoding
// would cost it several times what it costs against a real apiserver,
// and the scale benchmark would measure the simulator's encoding.

var protobuf = func() runtime.SerializerInfo {
	info, ok := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if !ok {
		panic("memberapi: no protobuf serializer")
	}
	return info
}()

// protobufFor reports whether a request gets protobuf: it asks for it and
// the kind is built in.
func protobufFor(r *http.Request, res *Resource) bool {
	return r != nil && strings.Contains(r.Header.Get("Accept"), runtime.ContentTypeProtobuf) &&
		scheme.Scheme.Recognizes(res.GVR.GroupVersion().WithKind(res.Kind))
}

// encodeProtobuf encodes an object (kind given) as the apiserver does: the
// "k8s\x00" envelope around the typed object.
func encodeProtobuf(gvk schema.GroupVersionKind, o object) ([]byte, error) {
	typed, err := scheme.Scheme.New(gvk)
	if err != nil {
		return nil, err
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o, typed); err != nil {
		return nil, err
	}
	typed.GetObjectKind().SetGroupVersionKind(gvk)
	var b bytes.Buffer
	if err := protobuf.Serializer.Encode(typed, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// answer writes an object (or a list: kind ends in List) in the
// encoding the request gets.
func answer(w http.ResponseWriter, r *http.Request, res *Resource, code int, kind string, o object) {
	if protobufFor(r, res) {
		b, err := encodeProtobuf(res.GVR.GroupVersion().WithKind(kind), o)
		if err != nil {
			writeStatus(w, newStatus(500, metav1.StatusReasonInternalError, "protobuf: "+err.Error()))
			return
		}
		w.Header().Set("Content-Type", runtime.ContentTypeProtobuf)
		w.WriteHeader(code)
		_, _ = w.Write(b) //nolint:gosec // a protobuf API answer (Content-Type set), in a test harness
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(mustJSON(o)) //nolint:gosec // as writeJSON
}

// watchFrame is one event of a protobuf watch stream: a length-prefixed
// metav1.WatchEvent whose object is the envelope-encoded object.
func watchFrame(res *Resource, typ string, o object) ([]byte, error) {
	kind := res.Kind
	gvk := res.GVR.GroupVersion().WithKind(kind)
	if k, _ := o["kind"].(string); k == "Status" {
		gvk = schema.GroupVersion{Version: "v1"}.WithKind("Status")
	}
	embedded, err := encodeProtobuf(gvk, o)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	frame := protobuf.StreamSerializer.NewFrameWriter(&b)
	ev := &metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Raw: embedded}}
	if err := protobuf.StreamSerializer.Encode(ev, frame); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
