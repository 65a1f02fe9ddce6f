package translate

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// YAML renders resources as a multi-document YAML stream, each document
// the resource's protojson (wrapped in an Any, so it names its type),
// preceded by a comment with its type and name. The output is
// deterministic: it is what golden files and `xds translate` show.
func YAML(resources []Resource) ([]byte, error) {
	var b bytes.Buffer
	for _, r := range resources {
		a, err := anypb.New(r.Message)
		if err != nil {
			return nil, err
		}
		js, err := protojson.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", shortType(r.Type), r.Name, err)
		}
		// Re-encoding through YAML also removes protojson's deliberately
		// unstable whitespace.
		y, err := yaml.JSONToYAML(js)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "---\n# %s %s\n", shortType(r.Type), r.Name)
		b.Write(y)
	}
	return b.Bytes(), nil
}
