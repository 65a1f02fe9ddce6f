package kubeclient

import (
	"net/http"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Core returns a clientset of Kubernetes' built-in kinds (Services,
// EndpointSlices, Namespaces, Leases) that sends and asks for protobuf, as
// Kubernetes' own controllers do. An EndpointSlice of 100 endpoints costs
// the apiserver and eastwest several times less to encode and decode than
// in JSON, on every watch event and every write-back; the apiserver
// answers JSON for what it cannot encode in protobuf. Custom resources
// (ServiceExports, ServiceImports, Gateway API) have no protobuf encoding:
// their clients keep cfg's JSON.
func Core(cfg *rest.Config) (kubernetes.Interface, error) {
	c := rest.CopyConfig(cfg)
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return kubernetes.NewForConfig(c)
}

// CoreFor is Core over an HTTP client shared with other clients of the
// same cluster.
func CoreFor(cfg *rest.Config, client *http.Client) (kubernetes.Interface, error) {
	c := rest.CopyConfig(cfg)
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return kubernetes.NewForConfigAndClient(c, client)
}
