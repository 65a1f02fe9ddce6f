package cache

import (
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Codec is the gRPC codec of the xDS server. It is protobuf, with two
// exceptions that keep the cost of a client proportional to what it is
// sent rather than to what the cache holds:
//
//   - A SotW request reaches the stream undecoded (see Server).
//   - A large response is written as a list of buffers in which every
//     resource's bytes are the cache's own, shared by all clients, rather
//     than copied into one buffer per client: the first response of a
//     gateway subscribed to 1,000 assignments of 100 endpoints is 3 MB,
//     and 100 gateways syncing at once no longer need 300 MB for it.
func Codec() encoding.CodecV2 { return codec{encoding.GetCodecV2("proto")} }

type codec struct{ encoding.CodecV2 }

// sharedMinSize is the size of resources from which a response's
// resources are written from the cache's bytes; below it one buffer is
// cheaper than a list.
const sharedMinSize = 32 << 10

// Field numbers of the messages the codec writes itself.
const (
	sotwResourcesField   = 2 // DiscoveryResponse.resources
	deltaResourcesField  = 2 // DeltaDiscoveryResponse.resources
	resourceVersionField = 1 // Resource.version
	resourceAnyField     = 2 // Resource.resource
	resourceNameField    = 3 // Resource.name
	anyTypeURLField      = 1 // Any.type_url
	anyValueField        = 2 // Any.value
)

// Marshal marshals v; see Codec.
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *discoveryv3.DiscoveryResponse:
		if resourcesSize(m.GetResources(), (*anypb.Any).GetValue) >= sharedMinSize {
			return marshalSotw(m)
		}
	case *discoveryv3.DeltaDiscoveryResponse:
		if resourcesSize(m.GetResources(), func(r *discoveryv3.Resource) []byte { return r.GetResource().GetValue() }) >= sharedMinSize {
			return marshalDelta(m)
		}
	}
	return c.CodecV2.Marshal(v)
}

func resourcesSize[T any](rs []T, value func(T) []byte) int {
	n := 0
	for _, r := range rs {
		n += len(value(r))
	}
	return n
}

// shared builds a message's encoding from its own small parts and the
// resources' bytes, which it references.
type shared struct {
	head []byte
	// cuts are the ends in head of the parts before each value.
	cuts   []int
	values [][]byte
}

// envelope appends msg without its field skip (the resources).
func (s *shared) envelope(msg proto.Message, skip protowire.Number) error {
	src := msg.ProtoReflect()
	env := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Number() != skip {
			env.Set(fd, v)
		}
		return true
	})
	var err error
	s.head, err = proto.MarshalOptions{}.MarshalAppend(s.head, env.Interface())
	return err
}

// any appends a as a field num, its value to be written from its bytes.
func (s *shared) any(num protowire.Number, a *anypb.Any) {
	s.head = protowire.AppendTag(s.head, num, protowire.BytesType)
	s.head = appendSize(s.head, anySize(a))
	s.anyFields(a)
}

func (s *shared) anyFields(a *anypb.Any) {
	if tu := a.GetTypeUrl(); tu != "" {
		s.head = protowire.AppendTag(s.head, anyTypeURLField, protowire.BytesType)
		s.head = protowire.AppendString(s.head, tu)
	}
	if v := a.GetValue(); len(v) > 0 {
		s.head = protowire.AppendTag(s.head, anyValueField, protowire.BytesType)
		s.head = protowire.AppendVarint(s.head, uint64(len(v)))
		s.cuts = append(s.cuts, len(s.head))
		s.values = append(s.values, v)
	}
}

// appendSize appends a length prefix.
func appendSize(b []byte, n int) []byte {
	return protowire.AppendVarint(b, uint64(n)) //nolint:gosec // a size, never negative
}

func anySize(a *anypb.Any) int {
	n := 0
	if tu := a.GetTypeUrl(); tu != "" {
		n += protowire.SizeTag(anyTypeURLField) + protowire.SizeBytes(len(tu))
	}
	if v := a.GetValue(); len(v) > 0 {
		n += protowire.SizeTag(anyValueField) + protowire.SizeBytes(len(v))
	}
	return n
}

// buffers returns the encoding: parts of head between the values.
func (s *shared) buffers() mem.BufferSlice {
	out := make(mem.BufferSlice, 0, 2*len(s.values)+1)
	from := 0
	for i, v := range s.values {
		out = append(out, mem.SliceBuffer(s.head[from:s.cuts[i]]), mem.SliceBuffer(v))
		from = s.cuts[i]
	}
	if from < len(s.head) {
		out = append(out, mem.SliceBuffer(s.head[from:]))
	}
	return out
}

func marshalSotw(m *discoveryv3.DiscoveryResponse) (mem.BufferSlice, error) {
	s := &shared{head: make([]byte, 0, 256+100*len(m.Resources))}
	if err := s.envelope(m, sotwResourcesField); err != nil {
		return nil, err
	}
	for _, a := range m.Resources {
		s.any(sotwResourcesField, a)
	}
	return s.buffers(), nil
}

func marshalDelta(m *discoveryv3.DeltaDiscoveryResponse) (mem.BufferSlice, error) {
	s := &shared{head: make([]byte, 0, 256+150*len(m.Resources))}
	if err := s.envelope(m, deltaResourcesField); err != nil {
		return nil, err
	}
	for _, r := range m.Resources {
		if !plainResource(r) {
			// Fields the cache never sets: encoded whole.
			var err error
			s.head = protowire.AppendTag(s.head, deltaResourcesField, protowire.BytesType)
			s.head = appendSize(s.head, proto.Size(r))
			if s.head, err = (proto.MarshalOptions{}).MarshalAppend(s.head, r); err != nil {
				return nil, err
			}
			continue
		}
		size := 0
		if r.Version != "" {
			size += protowire.SizeTag(resourceVersionField) + protowire.SizeBytes(len(r.Version))
		}
		if r.Name != "" {
			size += protowire.SizeTag(resourceNameField) + protowire.SizeBytes(len(r.Name))
		}
		if r.Resource != nil {
			size += protowire.SizeTag(resourceAnyField) + protowire.SizeBytes(anySize(r.Resource))
		}
		s.head = protowire.AppendTag(s.head, deltaResourcesField, protowire.BytesType)
		s.head = appendSize(s.head, size)
		if r.Version != "" {
			s.head = protowire.AppendTag(s.head, resourceVersionField, protowire.BytesType)
			s.head = protowire.AppendString(s.head, r.Version)
		}
		if r.Name != "" {
			s.head = protowire.AppendTag(s.head, resourceNameField, protowire.BytesType)
			s.head = protowire.AppendString(s.head, r.Name)
		}
		if r.Resource != nil {
			s.any(resourceAnyField, r.Resource)
		}
	}
	return s.buffers(), nil
}

// plainResource reports whether r has only the fields the cache sets:
// name, version and the resource.
func plainResource(r *discoveryv3.Resource) bool {
	return r.ResourceName == nil && len(r.Aliases) == 0 && r.Ttl == nil && r.CacheControl == nil && r.Metadata == nil
}

// rawRequest is a DiscoveryRequest as received, in b (reused when large
// enough).
type rawRequest struct{ b []byte }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawRequest); ok {
		n := data.Len()
		if cap(r.b) < n {
			r.b = make([]byte, n)
		}
		r.b = r.b[:n]
		data.CopyTo(r.b)
		return nil
	}
	return c.CodecV2.Unmarshal(data, v)
}
