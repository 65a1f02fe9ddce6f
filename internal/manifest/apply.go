package manifest

import (
	"context"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// Apply creates or updates one object by server-side apply with strict
// field validation (an unknown or misspelt field fails, as at helm
// install), as fieldManager, mapping its kind through mapper.
func Apply(ctx context.Context, dyn dynamic.Interface, mapper meta.RESTMapper, fieldManager string, u *unstructured.Unstructured) error {
	gvk := u.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	b, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: fieldManager, Force: &force, FieldValidation: "Strict"}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		_, err = dyn.Resource(m.Resource).Namespace(u.GetNamespace()).Patch(ctx, u.GetName(), types.ApplyPatchType, b, opts)
	} else {
		_, err = dyn.Resource(m.Resource).Patch(ctx, u.GetName(), types.ApplyPatchType, b, opts)
	}
	return err
}
