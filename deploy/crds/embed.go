package crds

import _ "embed" // for go:embed

// ClusterPropertyCRD is about.k8s.io ClusterProperty (v1beta1, stored, and v1alpha1).
//
//go:embed about.k8s.io_clusterproperties.yaml
var ClusterPropertyCRD []byte

// GatewayParametersCRD is eastwest.io/v1alpha1 GatewayParameters
// (pkg/provision).
//
//go:embed eastwest.io_gatewayparameters.yaml
var GatewayParametersCRD []byte
