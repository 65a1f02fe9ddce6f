package cache

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Server serves the cache over gRPC. Delta streams and unary Fetch are
// go-control-plane's server; state-of-the-world streams (ADS and the
// per-type services) are served here, because every SotW ACK repeats the
// client's whole subscription: a gateway subscribed to 1,000 endpoints
// sends 1,000 names with each ACK, and go-control-plane decodes them and
// rebuilds its subscription map from them every time (measured: over
// half the server's CPU per change with 100 such clients). This server
// keeps each stream's last names as received: an ACK whose names are the
// same bytes costs a comparison, not a decode, and the subscription is
// rebuilt only when it changes. The protocol is go-control-plane's: the
// same watches, nonces, ordering and callbacks.
type Server struct {
	serverv3.Server
	cache     SotWWatcher
	callbacks serverv3.Callbacks
	ctx       context.Context
	streams   atomic.Int64
}

// window is the flow-control window of every xDS stream and connection:
// what a client may send before the server reads it (a SotW ACK of 10,000
// names is some 400 kB).
const window = 1 << 20

// SotWWatcher is what the SotW server needs of a cache: a watch per
// request of a stream, as go-control-plane's ConfigWatcher, that also
// knows whether the request changed the subscription's names (namesChanged)
// and whether it repeats an ACK (again). *Cache is one; the delta server
// is go-control-plane's, on the cache's CreateDeltaWatch.
type SotWWatcher interface {
	CreateSotWWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response, namesChanged, again bool) (cancel func(), err error)
}

var _ SotWWatcher = (*Cache)(nil)

// ServerOptions are the gRPC server options Server needs: its Codec, and
// fixed flow-control windows, which turn off gRPC's bandwidth-delay
// estimator (it pings the client on every message received: with 100
// gateways ACKing each change, a write and a read per stream per change).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(Codec()),
		grpc.InitialWindowSize(window),
		grpc.InitialConnWindowSize(window),
	}
}

// NewServer returns the xDS server of c; its streams end when ctx does.
// The gRPC server must use ServerOptions (its codec hands SotW requests
// over undecoded).
func NewServer(ctx context.Context, c *Cache, callbacks serverv3.Callbacks) *Server {
	if callbacks == nil {
		callbacks = serverv3.CallbackFuncs{}
	}
	return &Server{Server: serverv3.NewServer(ctx, c, callbacks), cache: c, callbacks: callbacks, ctx: ctx}
}

// StreamAggregatedResources serves a SotW ADS stream.
func (s *Server) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return s.sotw(st, resourcev3.AnyType)
}

// sotwServerStream is what the ADS and per-type streams have in common.
type sotwServerStream interface {
	grpc.ServerStream
	Send(*discoveryv3.DiscoveryResponse) error
}

// StreamClusters serves a SotW CDS stream.
func (s *Server) StreamClusters(st clusterservice.ClusterDiscoveryService_StreamClustersServer) error {
	return s.sotw(st, resourcev3.ClusterType)
}

// StreamEndpoints serves a SotW EDS stream.
func (s *Server) StreamEndpoints(st endpointservice.EndpointDiscoveryService_StreamEndpointsServer) error {
	return s.sotw(st, resourcev3.EndpointType)
}

// StreamListeners serves a SotW LDS stream.
func (s *Server) StreamListeners(st listenerservice.ListenerDiscoveryService_StreamListenersServer) error {
	return s.sotw(st, resourcev3.ListenerType)
}

// StreamRoutes serves a SotW RDS stream.
func (s *Server) StreamRoutes(st routeservice.RouteDiscoveryService_StreamRoutesServer) error {
	return s.sotw(st, resourcev3.RouteType)
}

// sotwState is one SotW stream.
type sotwState struct {
	id      int64
	defType string // the type of a per-type stream; AnyType for ADS
	node    *corev3.Node
	nonce   int64
	watches map[string]*sotwWatch
	out     chan cachev3.Response
}

// sotwWatch is a stream's state for one type.
type sotwWatch struct {
	cancel func()
	nonce  string
	// acked is the last nonce the client acknowledged: a request that
	// acknowledges it again asks again for what it holds.
	acked string
	sub   *streamv3.Subscription
	// raw and names are the resource_names of the last request as
	// received and decoded.
	raw   []byte
	names []string
}

func (s *Server) sotw(st sotwServerStream, defType string) error {
	id := s.streams.Add(1)
	if err := s.callbacks.OnStreamOpen(st.Context(), id, defType); err != nil {
		return err
	}
	ss := &sotwState{id: id, defType: defType, watches: map[string]*sotwWatch{}, out: make(chan cachev3.Response, len(servedTypes))}
	defer func() {
		for _, w := range ss.watches {
			if w.cancel != nil {
				w.cancel()
			}
		}
		s.callbacks.OnStreamClosed(id, ss.node)
	}()

	// Two buffers take turns: one is read into while the other's request
	// is handled (an ACK of 1,000 names is some 40 kB; nothing of it is
	// kept but names that changed, which are copied).
	reqs, free := make(chan *rawRequest), make(chan *rawRequest, 2)
	free <- &rawRequest{}
	free <- &rawRequest{}
	go func() {
		defer close(reqs)
		for {
			var r *rawRequest
			select {
			case r = <-free:
			case <-st.Context().Done():
				return
			case <-s.ctx.Done():
				return
			}
			if err := st.RecvMsg(r); err != nil {
				return
			}
			select {
			case reqs <- r:
			case <-st.Context().Done():
				return
			case <-s.ctx.Done():
				return
			}
		}
	}()

	for {
		select {
		case <-s.ctx.Done():
			return nil
		case resp := <-ss.out:
			if err := s.send(st, ss, resp); err != nil {
				return status.Error(codes.Unavailable, err.Error())
			}
		case r, ok := <-reqs:
			if !ok {
				return nil
			}
			err := s.request(st, ss, r.b)
			free <- r
			if err != nil {
				return err
			}
		}
	}
}

// request handles one request: it replaces the type's watch unless the
// request answers a response that is not the latest (a stale nonce).
func (s *Server) request(st sotwServerStream, ss *sotwState, b []byte) error {
	req, raw, err := ss.decode(b)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "malformed request: %v", err)
	}
	if req.GetNode() != nil {
		ss.node = req.GetNode()
	} else {
		req.Node = ss.node
	}
	typ := req.GetTypeUrl()
	if typ == "" {
		if ss.defType == resourcev3.AnyType {
			return status.Error(codes.InvalidArgument, "type URL is required for ADS")
		}
		typ, req.TypeUrl = ss.defType, ss.defType
	}
	if ss.defType != resourcev3.AnyType && typ != ss.defType {
		return status.Errorf(codes.InvalidArgument, "type URL %s on a %s stream", typ, ss.defType)
	}
	if err := s.callbacks.OnStreamRequest(ss.id, req); err != nil {
		return err
	}
	w := ss.watches[typ]
	namesChanged, again := false, false
	if w == nil {
		sub := streamv3.NewSotwSubscription(req.GetResourceNames(), true)
		w = &sotwWatch{sub: &sub}
		ss.watches[typ] = w
	} else {
		if w.nonce != "" && req.GetResponseNonce() != w.nonce {
			// An answer to an older response: the client gets the latest
			// anyway (xDS protocol, "resource updates").
			return nil
		}
		if w.cancel != nil {
			w.cancel()
		}
		// What is queued goes out first, in order: a response of this
		// type too, unless the request changes the names it asks for
		// (then it is dropped, and the new watch answers from what the
		// client holds). Dropping it while sending those queued behind
		// it would serve them out of order: a listener whose new route
		// names a cluster of the dropped response is rejected (Envoy:
		// "unknown cluster"), and stays rejected until the listeners
		// change again.
		if err := s.sendPending(st, ss, typ, !sameSlice(w.names, req.GetResourceNames())); err != nil {
			return err
		}
		if !sameSlice(w.names, req.GetResourceNames()) {
			w.sub.SetResourceSubscription(req.GetResourceNames())
			namesChanged = true
		}
		// The first request with the latest nonce acknowledges it (or
		// rejects it); another one with the same nonce and names, not a
		// rejection, asks again (xDS protocol, "resource warming": Envoy
		// asks for the endpoints of a cluster it updated, which it keeps
		// warming until they come).
		if req.GetErrorDetail() == nil && w.nonce != "" && req.GetResponseNonce() == w.nonce {
			again = w.acked == w.nonce && !namesChanged
			w.acked = w.nonce
		}
	}
	// b is reused for the next request: only a copy of the names is kept.
	if !sameSlice(w.names, req.GetResourceNames()) {
		w.raw, w.names = bytes.Clone(raw), req.GetResourceNames()
	}
	cancel, err := s.cache.CreateSotWWatch(req, *w.sub, ss.out, namesChanged, again)
	if err != nil {
		return err
	}
	w.cancel = cancel
	return nil
}

func (s *Server) sendPending(st sotwServerStream, ss *sotwState, typ string, drop bool) error {
	for {
		select {
		case resp := <-ss.out:
			if !drop || resp.GetRequest().GetTypeUrl() != typ {
				if err := s.send(st, ss, resp); err != nil {
					return err
				}
			}
		default:
			return nil
		}
	}
}

// send sends one response and records, in the type's subscription, what
// the client now holds.
func (s *Server) send(st sotwServerStream, ss *sotwState, resp cachev3.Response) error {
	out, err := resp.GetDiscoveryResponse()
	if err != nil {
		return err
	}
	typ := resp.GetRequest().GetTypeUrl()
	w := ss.watches[typ]
	if w == nil {
		return errors.New("response without a watch for " + typ)
	}
	// The response is shared by nobody: the nonce is this stream's.
	ss.nonce++
	out.Nonce = strconv.FormatInt(ss.nonce, 10)
	if r, ok := resp.(*sotwResponse); ok {
		// In place: the watch that made this response is done, and the
		// next one is made by this goroutine, so nobody reads the map.
		returned := w.sub.ReturnedResources()
		if returned == nil {
			returned = map[string]string{}
			w.sub.SetReturnedResources(returned)
		}
		r.applyTo(returned)
	} else {
		w.sub.SetReturnedResources(resp.GetReturnedResources())
	}
	w.nonce = out.Nonce
	s.callbacks.OnStreamResponse(resp.GetContext(), ss.id, resp.GetRequest(), out)
	return st.Send(out)
}

// decode decodes a request, except its resource_names when they are the
// same bytes as the previous request's of the same type: those are taken
// from that request. It returns the names' bytes as received.
func (ss *sotwState) decode(b []byte) (*discoveryv3.DiscoveryRequest, []byte, error) {
	req := &discoveryv3.DiscoveryRequest{}
	start, end, contiguous := namesSpan(b, ss.watches)
	if !contiguous {
		// Names interleaved with other fields (no encoder we know does
		// this): decode everything.
		return req, nil, proto.Unmarshal(b, req)
	}
	rest := b
	if start < end {
		rest = make([]byte, 0, len(b)-(end-start))
		rest = append(append(rest, b[:start]...), b[end:]...)
	}
	if err := proto.Unmarshal(rest, req); err != nil {
		return nil, nil, err
	}
	raw := b[start:end]
	typ := req.GetTypeUrl()
	if typ == "" {
		typ = ss.defType
	}
	if w := ss.watches[typ]; w != nil && w.raw != nil && string(w.raw) == string(raw) {
		req.ResourceNames = w.names
		return req, raw, nil
	}
	if len(raw) > 0 {
		var names discoveryv3.DiscoveryRequest
		if err := proto.Unmarshal(raw, &names); err != nil {
			return nil, nil, err
		}
		req.ResourceNames = names.ResourceNames
	}
	return req, raw, nil
}

// resourceNamesField is DiscoveryRequest.resource_names.
const resourceNamesField = 3

// namesSpan finds the resource_names fields of an encoded request: the
// span [start, end) they occupy, and whether they are one run (not
// interleaved with other fields). A malformed message reports one run of
// nothing: decoding it then fails on its own. Where the names start with
// the bytes of a previous request's names (an ACK), the span is found by
// one comparison instead of a walk over every name.
func namesSpan(b []byte, known map[string]*sotwWatch) (start, end int, contiguous bool) {
	start, end = -1, -1
	for off := 0; off < len(b); {
		if start < 0 {
			if next, ok := knownNames(b, off, known); ok {
				start, end, off = off, next, next
				continue
			}
		}
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return 0, 0, true
		}
		m := protowire.ConsumeFieldValue(num, typ, b[off+n:])
		if m < 0 {
			return 0, 0, true
		}
		if num == resourceNamesField {
			switch {
			case start < 0:
				start = off
			case end != off:
				return 0, 0, false
			}
			end = off + n + m
		}
		off += n + m
	}
	if start < 0 {
		return 0, 0, true
	}
	return start, end, true
}

// knownNames reports whether the fields at off are exactly a known run of
// names (followed by the end or another field), and where they end.
func knownNames(b []byte, off int, known map[string]*sotwWatch) (int, bool) {
	for _, w := range known {
		if len(w.raw) == 0 || !bytes.HasPrefix(b[off:], w.raw) {
			continue
		}
		next := off + len(w.raw)
		if next == len(b) {
			return next, true
		}
		if num, _, n := protowire.ConsumeTag(b[next:]); n > 0 && num != resourceNamesField {
			return next, true
		}
	}
	return 0, false
}

// sameSlice reports whether a and b are the same slice (not merely equal).
func sameSlice(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
