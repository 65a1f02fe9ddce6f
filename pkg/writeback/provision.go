package writeback

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/eastwest-dev/eastwest/pkg/gatewayapi"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/provision"
)

// The kinds of what a Gateway's Envoys need, in the order they are
// applied (what the Deployment mounts first) and deleted (in reverse).
const (
	kindServiceAccount = "ServiceAccount"
	kindConfigMap      = "ConfigMap"
	kindSecret         = "Secret"
	kindDeployment     = "Deployment"
	kindService        = "Service"
	kindPDB            = "PodDisruptionBudget"
)

// fieldManager is eastwest's server-side apply field manager.
const fieldManager = "eastwest"

// annotationProvisionHash on a provisioned object is the hash of what
// eastwest applied: the same hash, nothing to apply.
const annotationProvisionHash = "eastwest.io/provision-hash"

// provisionKey names one provisioned object.
type provisionKey struct{ kind, namespace, name string }

// ProvisionOptions configure the provisioning of Gateways' Envoys.
type ProvisionOptions struct {
	// Enabled turns it on (xds serve --provision-gateways).
	Enabled bool
	// TrustDomain names the Envoys' identities.
	TrustDomain string
	// Now is the clock of certificate renewals (nil: time.Now).
	Now func() time.Time
}

// SetProvisioning configures the provisioning of Gateways' Envoys. Set it
// before Run.
func (w *Writeback) SetProvisioning(o ProvisionOptions) {
	if o.Now == nil {
		o.Now = time.Now
	}
	w.provisionOpts = o
}

// GatewayAPIChanged is told a member's Gateway API result: the statuses
// the leader writes (StatusChanged) and the Gateways whose Envoys it
// deploys.
func (w *Writeback) GatewayAPIChanged(member string, res gatewayapi.Result) {
	w.mu.Lock()
	if w.provisions == nil {
		w.provisions = map[string][]gatewayapi.Provision{}
		w.provisionPending = map[string]bool{}
	}
	before := w.provisions[member]
	w.provisions[member] = res.Provision
	changed := w.provisionOpts.Enabled && !provisionsEqual(before, res.Provision)
	if changed {
		w.provisionPending[member] = true
		w.queueLocked(member)
	}
	w.mu.Unlock()
	w.StatusChanged(member, res.Statuses) // wakes the loop when statuses changed
	if changed {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// provisionsEqual reports whether two lists deploy the same: the same
// Gateways (by UID and spec generation: their status writes, which bump
// the resource version, change nothing deployed), classes and parameters.
func provisionsEqual(a, b []gatewayapi.Provision) bool {
	return slices.EqualFunc(a, b, func(x, y gatewayapi.Provision) bool {
		return x.Class == y.Class && x.Keep == y.Keep && x.Gateway.UID == y.Gateway.UID && x.Gateway.Generation == y.Gateway.Generation &&
			x.Gateway.Namespace == y.Gateway.Namespace && x.Gateway.Name == y.Gateway.Name && apiequality.Semantic.DeepEqual(x.Params, y.Params)
	})
}

// provisionMember applies, in a member, what its Gateways' Envoys need,
// renews their identities when due, and deletes what eastwest
// provisioned for Gateways it no longer deploys. A member that does not
// let eastwest manage those objects is said so once, and does not fail
// its pass: retry is set, and its Gateways wait for the grant (tried
// again with the member's next pass).
func (w *Writeback) provisionMember(ctx context.Context, m *member, info mcs.ClusterInfo, wants []gatewayapi.Provision) (retry bool, err error) {
	pm := provision.Member{ClusterID: string(info.ID), ClusterSet: info.ClusterSet, TrustDomain: w.provisionOpts.TrustDomain}
	err = m.provision(ctx, pm, wants, w.provisionOpts.Now())
	switch {
	case apierrors.IsForbidden(err):
		if !m.provisionForbidden {
			m.log.Warn("Gateways' Envoys not deployed: the member does not let eastwest manage them (the chart's member.gatewayProvisioning grants it)", "err", err)
		}
		m.provisionForbidden = true
		return true, nil
	case err != nil:
		return false, fmt.Errorf("gateways' Envoys: %w", err)
	default:
		if m.provisionForbidden {
			m.log.Info("Gateways' Envoys deployed: the member lets eastwest manage them now")
		}
		m.provisionForbidden = false
		return false, nil
	}
}

// provision brings one member's provisioned objects to wants.
func (m *member) provision(ctx context.Context, pm provision.Member, wants []gatewayapi.Provision, now time.Time) error {
	have, err := m.listProvisioned(ctx)
	if err != nil {
		return err
	}
	desired := map[provisionKey]bool{}
	var errs []error
	for _, p := range wants {
		if p.Keep {
			// Parameters that cannot be used now: what is there stays.
			name := provision.Name(p.Gateway.Name, p.Class)
			for kind := range provisionedGVR {
				n := name
				if kind == kindSecret {
					n = provision.IdentitySecretName(p.Gateway.Name, p.Class)
				}
				desired[provisionKey{kind, p.Gateway.Namespace, n}] = true
			}
			continue
		}
		objs, err := provision.Render(p.Gateway, p.Class, pm, p.Params)
		if err != nil {
			errs = append(errs, fmt.Errorf("gateway %s/%s: %w", p.Gateway.Namespace, p.Gateway.Name, err))
			continue
		}
		ordered := []struct {
			kind string
			obj  metav1.Object
		}{{kindServiceAccount, objs.ServiceAccount}, {kindConfigMap, objs.ConfigMap}}
		if objs.IdentitySecret != "" && p.Params.Issuer != nil {
			// Kept whether or not it is renewed now.
			desired[provisionKey{kindSecret, p.Gateway.Namespace, objs.IdentitySecret}] = true
			secret, err := m.identitySecret(ctx, p, pm, objs, now)
			if err != nil {
				errs = append(errs, fmt.Errorf("gateway %s/%s identity: %w", p.Gateway.Namespace, p.Gateway.Name, err))
			}
			if secret != nil {
				ordered = append(ordered, struct {
					kind string
					obj  metav1.Object
				}{kindSecret, secret})
			}
		}
		ordered = append(ordered, []struct {
			kind string
			obj  metav1.Object
		}{{kindDeployment, objs.Deployment}, {kindService, objs.Service}}...)
		if objs.PodDisruptionBudget != nil {
			ordered = append(ordered, struct {
				kind string
				obj  metav1.Object
			}{kindPDB, objs.PodDisruptionBudget})
		}
		failed := false
		for _, o := range ordered {
			k := provisionKey{o.kind, o.obj.GetNamespace(), o.obj.GetName()}
			desired[k] = true
			if failed {
				continue // what follows needs what failed (the Deployment mounts the ConfigMap)
			}
			if err := m.applyProvisioned(ctx, k, o.obj, have[k]); err != nil {
				errs = append(errs, fmt.Errorf("%s %s/%s: %w", k.kind, k.namespace, k.name, err))
				failed = true
			}
		}
	}
	// What eastwest deployed for Gateways it no longer deploys (deleted,
	// another class): the Service first. The Gateway's owner reference
	// would take them with it too, where a garbage collector runs.
	stale := slices.SortedFunc(maps.Keys(have), func(a, b provisionKey) int {
		return slices.Index(deleteOrder, a.kind) - slices.Index(deleteOrder, b.kind)
	})
	for _, k := range stale {
		if desired[k] {
			continue
		}
		if err := m.deleteProvisioned(ctx, k); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("%s %s/%s: %w", k.kind, k.namespace, k.name, err))
		}
	}
	return errors.Join(errs...)
}

var deleteOrder = []string{kindPDB, kindService, kindDeployment, kindConfigMap, kindServiceAccount, kindSecret}

// provisionedSelector selects what eastwest provisioned.
var provisionedSelector = metav1.ListOptions{LabelSelector: provision.LabelManagedBy + "=" + provision.ManagedBy + "," + provision.LabelGatewayClass}

// provisionedGVR is each provisioned kind's resource.
var provisionedGVR = map[string]schema.GroupVersionResource{
	kindServiceAccount: {Version: "v1", Resource: "serviceaccounts"},
	kindConfigMap:      {Version: "v1", Resource: "configmaps"},
	kindSecret:         {Version: "v1", Resource: "secrets"},
	kindDeployment:     {Group: "apps", Version: "v1", Resource: "deployments"},
	kindService:        {Version: "v1", Resource: "services"},
	kindPDB:            {Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"},
}

// listProvisioned returns what eastwest provisioned in the member, with
// the hash it applied.
func (m *member) listProvisioned(ctx context.Context) (map[provisionKey]string, error) {
	out := map[provisionKey]string{}
	for _, kind := range deleteOrder {
		list, err := m.dyn.Resource(provisionedGVR[kind]).Namespace("").List(ctx, provisionedSelector)
		if err != nil {
			return nil, err
		}
		for _, o := range list.Items {
			out[provisionKey{kind, o.GetNamespace(), o.GetName()}] = o.GetAnnotations()[annotationProvisionHash]
		}
	}
	return out, nil
}

// applyProvisioned applies an object (server-side apply, eastwest's
// field manager) unless what the member has carries the same hash.
func (m *member) applyProvisioned(ctx context.Context, k provisionKey, obj metav1.Object, haveHash string) error {
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	delete(ann, annotationProvisionHash)
	obj.SetAnnotations(ann)
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(raw)
	hash := hex.EncodeToString(sum[:])[:16]
	if hash == haveHash {
		return nil
	}
	if haveHash == "" {
		// Not ours as far as the list says: never take over an object of
		// that name that someone else made.
		if err := m.notInTheWay(ctx, k); err != nil {
			return err
		}
	}
	ann[annotationProvisionHash] = hash
	obj.SetAnnotations(ann)
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return err
	}
	if _, err := m.dyn.Resource(provisionedGVR[k.kind]).Namespace(k.namespace).Apply(ctx, k.name, &unstructured.Unstructured{Object: u},
		metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return err
	}
	verb := "apply"
	if haveHash == "" {
		verb = "create"
	}
	m.wrote(verb, k.kind, k.namespace, k.name)
	return nil
}

// notInTheWay fails when an object of k's kind and name exists that
// eastwest did not provision.
func (m *member) notInTheWay(ctx context.Context, k provisionKey) error {
	o, err := m.dyn.Resource(provisionedGVR[k.kind]).Namespace(k.namespace).Get(ctx, k.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case o.GetLabels()[provision.LabelManagedBy] != provision.ManagedBy:
		return fmt.Errorf("a %s of that name that eastwest did not make is in the way: rename it, or name the Gateway otherwise", k.kind)
	}
	return nil
}

func (m *member) deleteProvisioned(ctx context.Context, k provisionKey) error {
	if err := m.dyn.Resource(provisionedGVR[k.kind]).Namespace(k.namespace).Delete(ctx, k.name, metav1.DeleteOptions{}); err != nil {
		return err
	}
	m.wrote("delete", k.kind, k.namespace, k.name)
	return nil
}

// identitySecret returns the Gateway's identity Secret to apply: a new
// certificate from the member's issuer when the Secret's is missing or
// due (Issuer.Renew), else nil (the Secret stays as it is).
func (m *member) identitySecret(ctx context.Context, p gatewayapi.Provision, pm provision.Member, objs provision.Objects, now time.Time) (*corev1.Secret, error) {
	ns, name := p.Gateway.Namespace, objs.IdentitySecret
	id := pm.Identity(p.Gateway)
	issuerSecret, err := m.client.CoreV1().Secrets(p.Params.Issuer.Namespace).Get(ctx, p.Params.Issuer.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("issuer Secret %s/%s: %w", p.Params.Issuer.Namespace, p.Params.Issuer.Name, err)
	}
	issuer, err := provision.ParseIssuer(issuerSecret.Data[corev1.TLSCertKey], issuerSecret.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Errorf("issuer Secret %s/%s: %w", p.Params.Issuer.Namespace, p.Params.Issuer.Name, err)
	}
	current, err := m.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, err
	default:
		why := issuer.Renew(current.Data[corev1.TLSCertKey], current.Data["ca.crt"], id, p.Params.Duration, now)
		if why == "" {
			return nil, nil
		}
		m.log.Info("renewing a Gateway's Envoys' identity", "namespace", ns, "secret", name, "why", why)
	}
	cert, key, err := issuer.Issue(id, p.Params.Duration, now)
	if err != nil {
		return nil, err
	}
	meta := objs.ServiceAccount.ObjectMeta // the same labels and owner
	meta.Name = name
	meta.Annotations = map[string]string{provision.AnnotationIdentity: id}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: kindSecret},
		ObjectMeta: meta,
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key, "ca.crt": issuer.CertPEM},
	}, nil
}
