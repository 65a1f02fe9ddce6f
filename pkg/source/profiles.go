package source

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	cpv1a1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	cpclient "sigs.k8s.io/cluster-inventory-api/client/clientset/versioned"
	cpinformers "sigs.k8s.io/cluster-inventory-api/client/informers/externalversions"
	cpaccess "sigs.k8s.io/cluster-inventory-api/pkg/access"
)

// Profiles reads member clusters from the fleet's inventory: the
// ClusterProfiles (KEP-4322, sigs.k8s.io/cluster-inventory-api) in one
// namespace of the control plane's own cluster, as a fleet manager (Open
// Cluster Management, GKE Fleet, KubeFleet) publishes them. Each profile
// is a member named after it, reached as its status.accessProviders say
// (the deprecated credentialProviders too), with the credentials of the
// exec plugin the provider file names for that provider: eastwest holds
// no credential of its own for it, and client-go runs the plugin again
// when the credential expires or is refused.
type Profiles struct {
	Client cpclient.Interface
	// Namespace is the inventory namespace.
	Namespace string
	// ClusterManager, when set, reads only the profiles whose
	// x-k8s.io/cluster-manager label has this value.
	ClusterManager string
	// ProviderFile is the access providers file (the library's
	// -clusterprofile-provider-file): providers by name, each with the
	// exec plugin that gives its credentials. It is read again at every
	// scan: a changed file reconnects the members whose access changed.
	ProviderFile string
}

// OriginProfiles is the origin of members from ClusterProfiles.
const OriginProfiles = "profiles"

// profileWatch is the registry's view of the inventory.
type profileWatch struct {
	Profiles
	informer cache.SharedIndexInformer
	factory  cpinformers.SharedInformerFactory
	// kick asks Run for a scan (a profile changed).
	kick chan struct{}
	// mu serializes scans (ScanProfiles at start, runProfiles after).
	mu sync.Mutex
	// built are the last accesses built, by member, reused while their
	// hash holds (the library is not asked again every scan).
	built map[string]access
}

// WatchProfiles makes the registry read member clusters from
// ClusterProfiles too; call it before ScanProfiles and Run.
func (d *Members) WatchProfiles(p Profiles) {
	w := &profileWatch{Profiles: p, kick: make(chan struct{}, 1), built: map[string]access{}}
	opts := []cpinformers.SharedInformerOption{cpinformers.WithNamespace(p.Namespace), cpinformers.WithTransform(func(o any) (any, error) {
		if m, ok := o.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return o, nil
	})}
	if p.ClusterManager != "" {
		opts = append(opts, cpinformers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = w.selector() }))
	}
	w.factory = cpinformers.NewSharedInformerFactoryWithOptions(p.Client, 0, opts...)
	w.informer = w.factory.Apis().V1alpha1().ClusterProfiles().Informer()
	poke := func() {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	_, _ = w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { poke() }, UpdateFunc: func(_, _ any) { poke() }, DeleteFunc: func(any) { poke() },
	})
	d.profiles = w
}

func (w *profileWatch) selector() string {
	if w.ClusterManager == "" {
		return ""
	}
	return labels.Set{cpv1a1.LabelClusterManagerKey: w.ClusterManager}.String()
}

// ScanProfiles reads the inventory once (at start, so that every member
// is a source before the first publish; then Run follows it).
func (d *Members) ScanProfiles(ctx context.Context) {
	w := d.profiles
	list, err := w.Client.ApisV1alpha1().ClusterProfiles(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: w.selector()})
	if err != nil {
		d.log.Warn("cannot list ClusterProfiles, keeping the members they gave", "namespace", w.Namespace, "err", err)
		return
	}
	profiles := make([]*cpv1a1.ClusterProfile, len(list.Items))
	for i := range list.Items {
		profiles[i] = &list.Items[i]
	}
	d.setProfiles(ctx, profiles)
}

// runProfiles follows the inventory until ctx ends.
func (d *Members) runProfiles(ctx context.Context) {
	w := d.profiles
	w.factory.Start(ctx.Done())
	defer w.factory.Shutdown()
	// Changes seen during the first list come before the informer has
	// synced: scan once it has.
	if cache.WaitForCacheSync(ctx.Done(), w.informer.HasSynced) {
		d.scanProfiles(ctx)
	}
	// The provider file is read again every poll: a changed file
	// reconnects the members whose access it changes.
	t := time.NewTicker(d.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-t.C:
		}
		d.scanProfiles(ctx)
	}
}

// scanProfiles reads the profiles from the informer (once it has listed
// them; ScanProfiles gave them until then) and the provider file.
func (d *Members) scanProfiles(ctx context.Context) {
	w := d.profiles
	if !w.informer.HasSynced() {
		return
	}
	var profiles []*cpv1a1.ClusterProfile
	for _, o := range w.informer.GetStore().List() {
		if p, ok := o.(*cpv1a1.ClusterProfile); ok {
			profiles = append(profiles, p)
		}
	}
	d.setProfiles(ctx, profiles)
}

// setProfiles declares the members the profiles give.
func (d *Members) setProfiles(ctx context.Context, profiles []*cpv1a1.ClusterProfile) {
	w := d.profiles
	w.mu.Lock()
	defer w.mu.Unlock()
	file, err := os.ReadFile(w.ProviderFile)
	var providers *cpaccess.Config
	if err == nil {
		providers, err = cpaccess.NewFromFile(w.ProviderFile)
	}
	if err != nil {
		// Keep the members as they are: a provider file being replaced
		// must not drain the ClusterSet.
		d.log.Error("cannot read the ClusterProfile provider file, keeping the members it gave", "file", w.ProviderFile, "err", err)
		return
	}
	want := make(map[string]access, len(profiles))
	for _, p := range profiles {
		hash := profileHash(file, p)
		a, ok := w.built[p.Name]
		if !ok || a.hash != hash {
			a = profileAccess(providers, p)
			a.hash = hash
		}
		a.profile = p
		want[p.Name] = a
	}
	w.built = want
	d.setAccess(ctx, OriginProfiles, want)
}

// profileAccess is how to reach a profile's cluster: the rest.Config the
// library builds (the first of the profile's access providers the file
// names, with its exec plugin).
func profileAccess(providers *cpaccess.Config, p *cpv1a1.ClusterProfile) access {
	a := access{profile: p}
	if len(p.Status.AccessProviders) == 0 && len(p.Status.CredentialProviders) == 0 { //nolint:staticcheck // as above
		a.err = fmt.Errorf("ClusterProfile %s/%s has no status.accessProviders yet", p.Namespace, p.Name)
		return a
	}
	if a.cfg, a.err = providers.BuildConfigFromCP(p); a.err != nil {
		a.err = fmt.Errorf("ClusterProfile %s/%s: %w", p.Namespace, p.Name, a.err)
	}
	return a
}

// profileHash changes whenever what a profile's access is built from does:
// the provider file, the profile's access providers (server, CA, plugin
// parameters in their extensions).
func profileHash(file []byte, p *cpv1a1.ClusterProfile) [32]byte {
	h := sha256.New()
	h.Write(file)
	for _, v := range []any{p.Status.AccessProviders, p.Status.CredentialProviders} { //nolint:staticcheck // the deprecated field, read as the library does
		b, _ := json.Marshal(v)
		h.Write(b)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// trimProfile is what the Store reads of a profile: its name, age,
// properties and conditions (never how to reach the cluster).
func trimProfile(p *cpv1a1.ClusterProfile) *cpv1a1.ClusterProfile {
	if p == nil {
		return nil
	}
	return &cpv1a1.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion, CreationTimestamp: p.CreationTimestamp},
		Status:     cpv1a1.ClusterProfileStatus{Properties: p.Status.Properties, Conditions: p.Status.Conditions},
	}
}

func profileEqual(a, b *cpv1a1.ClusterProfile) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.UID == b.UID && a.ResourceVersion == b.ResourceVersion
}
