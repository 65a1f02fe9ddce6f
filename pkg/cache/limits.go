package cache

import (
	"fmt"
	"slices"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
)

// RefusalReasons are every reason a request is refused.
var RefusalReasons = []string{ReasonUnsupportedType, ReasonTooManyNames, ReasonNameTooLong, ReasonIdentity, ReasonNodeChanged, ReasonSecrets}

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
// total is the size of the whole subscription the names join.
func CheckNames(names []string, total int) error {
	if total > MaxNames || len(names) > MaxNames {
		return Refuse(ReasonTooManyNames, codes.ResourceExhausted, "subscription of %d resource names: at most %d per type and stream", max(total, len(names)), MaxNames)
	}
	for _, n := range names {
		if len(n) > MaxNameLength {
			return Refuse(ReasonNameTooLong, codes.InvalidArgument, "resource name of %d bytes: at most %d", len(n), MaxNameLength)
		}
	}
	return nil
}
