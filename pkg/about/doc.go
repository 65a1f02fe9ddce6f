// Package about is the About API (KEP-2149) as eastwest reads it: the
// cluster-scoped ClusterProperty (about.k8s.io v1beta1 and v1alpha1, the
// same fields) and the properties a ClusterSet uses. It is declared here
// because only a few of its instances matter and the whole About API
// module is not worth a dependency; it depends on nothing of eastwest's.
package about
