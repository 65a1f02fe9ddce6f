package envoy

import (
	"encoding/json"
	"os"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/bootstrap/internal_listener/v3"             // registers the type in the bootstrap
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"                     // registers the type in the bootstrap
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3" // registers the type in the bootstrap
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3" // registers the type in the bootstrap
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/envoystats"
)

// The Envoy bootstraps (east-west gateway, Gateway API Gateway) parse
// strictly into Envoy's Bootstrap proto, pass its validation rules, talk
// ADS to one control plane and declare a node that meets the contract
// (with the cluster the command line gives).
func TestEnvoyBootstrapsAreValid(t *testing.T) {
	for file, role := range map[string]string{"bootstrap.yaml": "gateway", "gateway-api-bootstrap.yaml": "gateway-api"} {
		t.Run(file, func(t *testing.T) { checkBootstrap(t, file, role) })
	}
}

func checkBootstrap(t *testing.T, file, role string) {
	y, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		t.Fatalf("not an Envoy bootstrap: %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("invalid bootstrap: %v", err)
	}
	if got := b.GetNode().GetMetadata().GetFields()[controlplane.MetadataRole].GetStringValue(); got != role {
		t.Errorf("node.metadata.role = %q, want %s", got, role)
	}
	node := proto.Clone(b.GetNode()).(*corev3.Node)
	node.Id, node.Cluster = "pod-1", "east" // --service-node, --service-cluster
	if _, err := controlplane.ParseNode(node); err != nil {
		t.Errorf("the node does not meet the contract: %v", err)
	}
	ads := b.GetDynamicResources().GetAdsConfig()
	if ads.GetApiType().String() != "GRPC" || ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != "xds_cluster" {
		t.Errorf("ADS config %v", ads)
	}
	if b.GetDynamicResources().GetCdsConfig().GetAds() == nil || b.GetDynamicResources().GetLdsConfig().GetAds() == nil {
		t.Error("CDS and LDS must come over ADS")
	}
	// The xDS connection is mutual TLS: a client certificate (the
	// identity the node claims) and the control plane's name verified.
	var up tlsv3.UpstreamTlsContext
	var xds *clusterv3.Cluster
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == "xds_cluster" {
			xds = c
		}
	}
	if err := xds.GetTransportSocket().GetTypedConfig().UnmarshalTo(&up); err != nil {
		t.Fatalf("xds_cluster has no TLS transport socket: %v", err)
	}
	ctx := up.GetCommonTlsContext()
	if len(ctx.GetTlsCertificates()) != 1 || ctx.GetValidationContext().GetTrustedCa().GetFilename() == "" || len(ctx.GetValidationContext().GetMatchTypedSubjectAltNames()) == 0 {
		t.Errorf("xds_cluster TLS lacks a client certificate or server verification: %v", ctx)
	}
	if a := b.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); a != "127.0.0.1" {
		t.Errorf("admin listens on %s, want loopback", a)
	}
	// The cross-cluster traffic tags are pkg/envoystats' (which the
	// provisioned bootstraps carry): one definition.
	want := &metricsv3.StatsConfig{StatsTags: envoystats.Tags()}
	if !proto.Equal(b.GetStatsConfig(), want) {
		t.Errorf("stats_config %v, want envoystats.Tags() %v", b.GetStatsConfig(), want)
	}
}

// The sample gRPC bootstrap is well-formed and its node meets the contract.
func TestGRPCBootstrapMeetsNodeContract(t *testing.T) {
	b, err := os.ReadFile("grpc-bootstrap.json")
	if err != nil {
		t.Fatal(err)
	}
	var boot struct {
		XDSServers []struct {
			ServerURI string `json:"server_uri"`
		} `json:"xds_servers"`
		Node json.RawMessage `json:"node"`
	}
	if err := json.Unmarshal(b, &boot); err != nil {
		t.Fatal(err)
	}
	if len(boot.XDSServers) != 1 || boot.XDSServers[0].ServerURI == "" {
		t.Errorf("xds_servers %v", boot.XDSServers)
	}
	var node bootstrapv3.Bootstrap
	if err := protojson.Unmarshal([]byte(`{"node":`+string(boot.Node)+`}`), &node); err != nil {
		t.Fatal(err)
	}
	if _, err := controlplane.ParseNode(node.GetNode()); err != nil {
		t.Errorf("sample node does not meet the contract: %v", err)
	}
}
