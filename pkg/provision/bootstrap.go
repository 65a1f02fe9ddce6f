package provision

import (
	"encoding/json"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/eastwest-dev/eastwest/pkg/envoystats"
)

// The node metadata of the contract (pkg/controlplane's MetadataRole and
// MetadataGateway; not imported, to keep this package a leaf).
const (
	metadataRole    = "role"
	metadataGateway = "gateway"
	roleGatewayAPI  = "gateway-api"
)

// The SDS resources the bootstrap reads from files: the Envoys' client
// certificate and the control plane's CA.
const (
	sdsClient = "xds-client"
	sdsCA     = "xds-ca"
)

// bootstrapFiles are the ConfigMap's files: bootstrap.json, and with TLS
// the two SDS files it reads the identity through (so that a renewed
// certificate is picked up without a restart: the kubelet replaces the
// Secret's folder, which Envoy watches), and the control plane's CA when
// the parameters give it.
func bootstrapFiles(gw *gwapiv1.Gateway, p Params) (map[string]string, error) {
	meta, err := structpb.NewStruct(map[string]any{metadataRole: roleGatewayAPI, metadataGateway: gw.Namespace + "/" + gw.Name})
	if err != nil {
		return nil, err
	}
	ads := &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	xds := &clusterv3.Cluster{
		Name:                 "xds_cluster",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		ConnectTimeout:       durationpb.New(5 * time.Second),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&upstreamsv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &upstreamsv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamsv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamsv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
						ConnectionKeepalive: &corev3.KeepaliveSettings{Interval: durationpb.New(30 * time.Second), Timeout: durationpb.New(10 * time.Second)},
					}},
				}},
			}),
		},
		LoadAssignment: endpoint("xds_cluster", p.XDSHost, p.XDSPort),
	}
	files := map[string]string{}
	if !p.XDS.Plaintext {
		caFile := identityDir + "/ca.crt"
		if p.XDS.CABundle != "" {
			caFile = bootstrapDir + "/ca.crt"
			files["ca.crt"] = p.XDS.CABundle
		}
		watched := &corev3.WatchedDirectory{Path: identityDir}
		client, err := sdsFile(&tlsv3.Secret{Name: sdsClient, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: file(identityDir + "/tls.crt"), PrivateKey: file(identityDir + "/tls.key"), WatchedDirectory: watched,
		}}})
		if err != nil {
			return nil, err
		}
		ca, err := sdsFile(&tlsv3.Secret{Name: sdsCA, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: file(caFile), WatchedDirectory: watched,
		}}})
		if err != nil {
			return nil, err
		}
		files["sds-client.json"], files["sds-ca.json"] = client, ca
		xds.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&tlsv3.UpstreamTlsContext{
			Sni: p.XDS.ServerName,
			CommonTlsContext: &tlsv3.CommonTlsContext{
				AlpnProtocols:                  []string{"h2"},
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: sdsClient, SdsConfig: pathSource(bootstrapDir + "/sds-client.json")}},
				ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: p.XDS.ServerName}},
					}}},
					ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: sdsCA, SdsConfig: pathSource(bootstrapDir + "/sds-ca.json")},
				}},
			},
		})}}
	}
	b := &bootstrapv3.Bootstrap{
		Node:        &corev3.Node{Metadata: meta},
		StatsConfig: &metricsv3.StatsConfig{StatsTags: envoystats.Tags()},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType: corev3.ApiConfigSource_GRPC, TransportApiVersion: corev3.ApiVersion_V3, SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "xds_cluster"}}}},
			},
			CdsConfig: ads, LdsConfig: ads,
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters:  []*clusterv3.Cluster{xds, {Name: "admin", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}, LoadAssignment: endpoint("admin", "127.0.0.1", adminPort)}},
			Listeners: []*listenerv3.Listener{readyListener()},
		},
		Admin: &bootstrapv3.Admin{Address: socket("127.0.0.1", adminPort)},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, err
	}
	s, err := stableJSON(b)
	if err != nil {
		return nil, err
	}
	files["bootstrap.json"] = s
	return files, nil
}

// readyListener serves the admin's /ready, for the kubelet's probe, and
// its /stats/prometheus, for scrapers (the cross-cluster traffic,
// pkg/envoystats), on ReadyPort; nothing else of the admin.
func readyListener() *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "ready",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "ready",
			VirtualHosts: []*routev3.VirtualHost{{Name: "ready", Domains: []string{"*"}, Routes: []*routev3.Route{
				{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/ready"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "admin"}}},
				},
				{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/stats/prometheus"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "admin"}}},
				},
				{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 404}},
				},
			}}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}}},
	}
	return &listenerv3.Listener{
		Name:    "ready",
		Address: socket("0.0.0.0", ReadyPort),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
		}}}},
	}
}

func endpoint(cluster, host string, port uint32) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: cluster, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socket(host, port)}},
	}}}}}
}

func socket(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func file(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func pathSource(path string) *corev3.ConfigSource {
	return &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{Path: path}}}
}

// sdsFile is an SDS file holding one Secret (a DiscoveryResponse's
// resources).
func sdsFile(s *tlsv3.Secret) (string, error) {
	if err := s.ValidateAll(); err != nil {
		return "", err
	}
	raw, err := protojson.Marshal(mustAny(s))
	if err != nil {
		return "", err
	}
	var res any
	if err := json.Unmarshal(raw, &res); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(map[string]any{"resources": []any{res}}, "", "  ")
	return string(b) + "\n", err
}

// stableJSON is a message's JSON with stable spacing (protojson's varies
// on purpose), so that the ConfigMap and its hash change only with it.
func stableJSON(m proto.Message) (string, error) {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return "", err
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	return string(b) + "\n", err
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}
