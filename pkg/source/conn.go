package source

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/eastwest-dev/eastwest/internal/kubeclient"
)

// Conn is one member cluster's connection, the one thing every reader and
// writer of the member uses: its rest.Config, its clients, what discovery
// found it serves, and a generation. The registry (Members) owns it: it
// makes a new Conn, with the next generation, whenever the member's
// access changes (a kubeconfig file or remote Secret rewritten, a rotated
// credential), and whoever built something from the previous one (the
// write-back's caches) builds it again from the new one. A Conn is never
// changed once made, but for its capabilities, set by each discovery.
type Conn struct {
	Member string
	// Generation counts the member's connections from 1: a new Conn
	// each time its access changes.
	Generation int64
	// Origin is where the member's access came from ("dir", "secrets").
	Origin string
	// Config is the member's rest.Config (client-side QPS and burst set).
	Config *rest.Config
	// Core speaks protobuf (kubeclient.Core); Dynamic, MCS and Gateway
	// speak JSON (custom resources have no protobuf encoding).
	Core    kubernetes.Interface
	Dynamic dynamic.Interface
	MCS     mcsclient.Interface
	Gateway gwclient.Interface
	// probe asks for the apiserver's version with a short timeout.
	probe kubernetes.Interface

	caps atomic.Pointer[Capabilities]
}

// Capabilities are what a member serves and lets eastwest read, found by
// discovery each time its source (re)connects: one rule, read by the
// informers and the write-back alike.
type Capabilities struct {
	// MCSVersion is the multicluster.x-k8s.io version read and written
	// (v1beta1 when the member serves it, else v1alpha1).
	MCSVersion string
	// Resources are the resources read, by kind (event.Kind's group and
	// kind): the version the member serves, and that eastwest may list.
	Resources map[schema.GroupKind]schema.GroupVersionResource
}

// Reads reports whether the member's informers read a kind.
func (c Capabilities) Reads(gk schema.GroupKind) bool {
	_, ok := c.Resources[gk]
	return ok
}

// memberQPS and memberBurst are every member client's client-side rate
// limit: together, the member's informers (a list per kind at each
// (re)connection, then watches) and the write-back's writes.
const memberQPS, memberBurst = 50, 100

// NewConn makes a member's clients from its rest.Config; nothing is sent
// to the member until they are used.
func NewConn(member, origin string, generation int64, cfg *rest.Config) (*Conn, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = memberQPS, memberBurst
	c := &Conn{Member: member, Origin: origin, Generation: generation, Config: cfg}
	// One HTTP client (one connection pool, one credential) for every
	// client of the member.
	hc, err := httpClient(cfg)
	if err != nil {
		return nil, err
	}
	if c.Core, err = kubeclient.CoreFor(cfg, hc); err != nil {
		return nil, err
	}
	if c.MCS, err = mcsclient.NewForConfigAndClient(cfg, hc); err != nil {
		return nil, err
	}
	if c.Dynamic, err = dynamic.NewForConfigAndClient(cfg, hc); err != nil {
		return nil, err
	}
	if c.Gateway, err = gwclient.NewForConfigAndClient(cfg, hc); err != nil {
		return nil, err
	}
	pc := rest.CopyConfig(cfg)
	pc.Timeout = 2 * time.Second
	phc, err := httpClient(pc)
	if err != nil {
		return nil, err
	}
	if c.probe, err = kubernetes.NewForConfigAndClient(pc, phc); err != nil {
		return nil, err
	}
	return c, nil
}

// httpClient is client-go's HTTP client for cfg, sending a request the
// apiserver refused as Unauthorized once more. client-go's exec
// credential plugins (a ClusterProfile's) get a new credential when one is
// refused, so a credential rotated and revoked before it expired costs no
// failed request: the retry carries the new one. (A static token refused
// is refused again: one more request.)
func httpClient(cfg *rest.Config) (*http.Client, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	hc.Transport = retryUnauthorized{hc.Transport}
	return hc, nil
}

// retryUnauthorized sends a request refused with 401 once more.
type retryUnauthorized struct{ next http.RoundTripper }

func (r retryUnauthorized) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || (req.Body != nil && req.Body != http.NoBody && req.GetBody == nil) {
		return resp, err
	}
	again := req.Clone(req.Context())
	// client-go's exec wrapper writes the credential into the request
	// it is given: the retry goes without it, for the wrapper to put in
	// the refreshed one.
	again.Header.Del("Authorization")
	if req.GetBody != nil {
		if again.Body, err = req.GetBody(); err != nil {
			return resp, nil //nolint:nilerr // the first answer stands
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return r.next.RoundTrip(again)
}

// WrappedRoundTripper returns the transport it wraps: client-go's
// transport helpers (utilnet.RoundTripperWrapper) walk wrappers with it.
func (r retryUnauthorized) WrappedRoundTripper() http.RoundTripper { return r.next }

// Capabilities returns what the last discovery found; ok is false until
// the member's source has discovered it once.
func (c *Conn) Capabilities() (Capabilities, bool) {
	p := c.caps.Load()
	if p == nil {
		return Capabilities{}, false
	}
	return *p, true
}

func (c *Conn) setCapabilities(caps Capabilities) { c.caps.Store(&caps) }

// resourcesOf lists the resources of one group version, cancelled with
// ctx (the discovery client's own calls cannot be: a member that accepts
// connections and never answers would hold its source, and whoever
// waited for it, for the client's 32 s timeout per call).
func resourcesOf(ctx context.Context, d discovery.DiscoveryInterface, gv schema.GroupVersion) ([]metav1.APIResource, error) {
	path := "/apis/" + gv.Group + "/" + gv.Version
	if gv.Group == "" {
		path = "/api/" + gv.Version
	}
	var list metav1.APIResourceList
	if err := d.RESTClient().Get().AbsPath(path).Do(ctx).Into(&list); err != nil {
		return nil, err
	}
	return list.APIResources, nil
}
