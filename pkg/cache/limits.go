package cache

import (
	"fmt"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// What one xDS client may make the cache hold. The cache keeps state per
// view, type and subscribed name; without bounds a client on the network
// could make it keep anything (made-up type URLs, millions of names).
//
// The limits are far above what eastwest serves: its own resource names
// are a few dozen bytes, and the largest view of 100,000 services x 2
// ports holds 200,000 clusters, which a wildcard subscription (no names)
// covers.
const (
	// MaxNames bounds the resource names of one subscription (one type of
	// one stream; a delta subscription's names accumulate).
	MaxNames = 100_000
	// MaxNameLength bounds one subscribed resource name (Kubernetes names
	// are at most 253 bytes; eastwest's resource names join a few).
	MaxNameLength = 1024
	// MaxStreamNameBytes bounds the bytes of the names one stream
	// subscribes to, over all its types: MaxNames of 1 KB each in each of
	// five types held a gigabyte for two streams. 4 MiB holds an explicit
	// EDS subscription of 100,000 eastwest clusters (about 40 bytes a
	// name).
	MaxStreamNameBytes = 4 << 20
	// MaxNodeBytes bounds a stream's node (id, cluster, metadata,
	// serialized): the cache keeps it for the stream's life (100 streams
	// of 3.9 MB node IDs held 723 MB). Envoy 1.40's own node is about
	// 60 KB: it lists every extension it was built with.
	MaxNodeBytes = 128 << 10
	// MaxStreamsPerPeer bounds the streams one peer holds open at once:
	// its certificate's identities with mutual TLS, else its IP address.
	// An Envoy opens one ADS stream, a gRPC client one per xDS target.
	MaxStreamsPerPeer = 64
	// MaxPeerNameBytes bounds the bytes of the names one peer subscribes
	// to over all its streams: without it, MaxStreamsPerPeer streams of
	// MaxStreamNameBytes each.
	MaxPeerNameBytes = 16 << 20
	// maxShown bounds what a refusal's record and log line keep of what
	// the client sent (node ID, cluster, identities).
	maxShown = 256
)

// servedTypes are the resource types eastwest serves (translate.TypeOrder
// makes exactly these). A request for any other type is refused: the
// cache keeps no state for it.
var servedTypes = []string{resourcev3.SecretType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

// Reasons a request is refused: the label of the refusal metric.
const (
	ReasonUnsupportedType = "unsupported_type"
	ReasonTooManyNames    = "too_many_names"
	ReasonNameTooLong     = "name_too_long"
	ReasonIdentity        = "identity"
	ReasonNodeChanged     = "node_changed"
	ReasonSecrets         = "secrets_not_allowed"
	ReasonNodeTooLarge    = "node_too_large"
	ReasonTooManyStreams  = "too_many_streams"
)

// RefusalReasons are every reason a request is refused.
var RefusalReasons = []string{ReasonUnsupportedType, ReasonTooManyNames, ReasonNameTooLong, ReasonIdentity, ReasonNodeChanged, ReasonSecrets, ReasonNodeTooLarge, ReasonTooManyStreams}

// Refusal is a request the control plane will not serve: it ends the
// stream (or the unary call) with Code and the message, and is counted
// under Reason.
type Refusal struct {
	Reason string
	Code   codes.Code
	Msg    string
}

func (r *Refusal) Error() string { return r.Msg }

// GRPCStatus makes the gRPC server send the refusal as the call's status.
func (r *Refusal) GRPCStatus() *status.Status { return status.New(r.Code, r.Msg) }

// Refuse returns a Refusal.
func Refuse(reason string, code codes.Code, format string, args ...any) *Refusal {
	return &Refusal{Reason: reason, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// CheckType refuses a type URL the cache does not serve.
func CheckType(typ string) error {
	if slices.Contains(servedTypes, typ) {
		return nil
	}
	shown := typ
	if len(shown) > 100 {
		shown = shown[:100] + "..."
	}
	return Refuse(ReasonUnsupportedType, codes.InvalidArgument, "type URL %q is not served (served: %v)", shown, servedTypes)
}

// CheckNames refuses a request naming too many or too long resources;
// total is the size of the whole subscription the names join, and
// streamBytes the bytes of the names the stream holds without them.
func CheckNames(names []string, total, streamBytes int) error {
	if total > MaxNames || len(names) > MaxNames {
		return Refuse(ReasonTooManyNames, codes.ResourceExhausted, "subscription of %d resource names: at most %d per type and stream", max(total, len(names)), MaxNames)
	}
	bytes := streamBytes
	for _, n := range names {
		if len(n) > MaxNameLength {
			return Refuse(ReasonNameTooLong, codes.InvalidArgument, "resource name of %d bytes: at most %d", len(n), MaxNameLength)
		}
		bytes += len(n)
	}
	if bytes > MaxStreamNameBytes {
		return Refuse(ReasonTooManyNames, codes.ResourceExhausted, "subscriptions of %d bytes of resource names: at most %d per stream", bytes, MaxStreamNameBytes)
	}
	return nil
}

// CheckNode refuses a node larger than MaxNodeBytes.
func CheckNode(n *corev3.Node) error {
	if size := proto.Size(n); size > MaxNodeBytes {
		return Refuse(ReasonNodeTooLarge, codes.InvalidArgument, "node of %d bytes: at most %d", size, MaxNodeBytes)
	}
	return nil
}

// shown is what a refusal keeps of a string the client sent.
func shown(s string) string {
	if len(s) <= maxShown {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:maxShown], len(s))
}
