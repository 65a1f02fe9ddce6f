package crds

import _ "embed" // for go:embed

// ClusterPropertyCRD is about.k8s.io/v1alpha1 ClusterProperty.
//
//go:embed about.k8s.io_clusterproperties.yaml
var ClusterPropertyCRD []byte
