// Package crds embeds the CustomResourceDefinitions eastwest ships that
// upstream modules do not: the About API's ClusterProperty.
package crds
