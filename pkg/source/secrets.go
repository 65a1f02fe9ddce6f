package source

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// LabelCluster marks a Secret of the control plane's namespace as a
// member cluster's kubeconfig (the remote-secret pattern); its value is
// the member's name.
const LabelCluster = "eastwest.io/cluster"

// SecretKubeconfigKey is the key of a remote secret holding the kubeconfig.
const SecretKubeconfigKey = "kubeconfig"

// Secrets reads remote secrets from the control plane's own cluster.
type Secrets struct {
	Client    kubernetes.Interface
	Namespace string
}

// WatchSecrets makes the registry read member clusters from remote
// secrets too; call it before Scan and Run.
func (d *Members) WatchSecrets(s *Secrets) { d.secrets = s }

// ScanSecrets reads the remote secrets once (also done by Run).
func (d *Members) ScanSecrets(ctx context.Context) { d.scanSecrets(ctx) }

func (d *Members) scanSecrets(ctx context.Context) {
	list, err := d.secrets.Client.CoreV1().Secrets(d.secrets.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelCluster})
	if err != nil {
		// Keep the members we have: an unreachable own cluster must not
		// drain the ClusterSet.
		d.log.Warn("cannot list remote secrets, keeping the members they gave", "namespace", d.secrets.Namespace, "err", err)
		return
	}
	want := map[string][]byte{}
	for _, s := range list.Items {
		name := s.Labels[LabelCluster]
		if name == "" {
			name = s.Name
		}
		b, ok := s.Data[SecretKubeconfigKey]
		if !ok {
			d.log.Error("remote secret has no kubeconfig key", "secret", s.Name, "key", SecretKubeconfigKey, "keys", slices.Sorted(keysOf(s.Data)))
			continue
		}
		want[name] = b
	}
	d.Set(ctx, "secrets", want)
}

func keysOf(m map[string][]byte) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// RemoteSecretOptions say how to make a member's remote secret.
type RemoteSecretOptions struct {
	// Member is the member cluster's name (the label's value).
	Member string
	// Namespace is the control plane's namespace, where the Secret goes,
	// and where the member's ServiceAccount lives.
	Namespace      string
	ServiceAccount string
	TokenTTL       time.Duration
	// Context is the kubeconfig context of the member (empty: the
	// current one).
	Context string
	// Server, when set, is the member's API server address as the control
	// plane reaches it (https://HOST:PORT), written into the Secret instead
	// of the kubeconfig's (which may be a tunnel, a loopback address or a
	// name only the caller resolves). The token is still requested
	// through the kubeconfig's.
	Server string
}

// RemoteSecret makes the Secret that adds a member cluster to the
// ClusterSet, as `istioctl create-remote-secret` does: a kubeconfig for the
// member's ServiceAccount (created by deploy/kubernetes/member-rbac.yaml),
// with a token from the TokenRequest API rather than the caller's own
// credentials. admin is the caller's kubeconfig of the member.
func RemoteSecret(ctx context.Context, admin *clientcmdapi.Config, opts RemoteSecretOptions) (*corev1.Secret, error) {
	overrides := &clientcmd.ConfigOverrides{CurrentContext: opts.Context}
	cfg, err := clientcmd.NewDefaultClientConfig(*admin, overrides).ClientConfig()
	if err != nil {
		return nil, err
	}
	raw, err := clientcmd.NewDefaultClientConfig(*admin, overrides).RawConfig()
	if err != nil {
		return nil, err
	}
	name := raw.CurrentContext
	if opts.Context != "" {
		name = opts.Context
	}
	kctx := raw.Contexts[name]
	if kctx == nil || raw.Clusters[kctx.Cluster] == nil {
		if opts.Context != "" {
			return nil, fmt.Errorf("the kubeconfig has no context %q with a cluster", opts.Context)
		}
		return nil, errors.New("the kubeconfig has no current context with a cluster")
	}
	cluster := raw.Clusters[kctx.Cluster].DeepCopy()
	if opts.Server != "" {
		u, err := url.Parse(opts.Server)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("--server %q: want https://HOST[:PORT]", opts.Server)
		}
		cluster.Server = opts.Server
	}
	if len(cluster.CertificateAuthorityData) == 0 && cluster.CertificateAuthority != "" {
		if cluster.CertificateAuthorityData, err = os.ReadFile(cluster.CertificateAuthority); err != nil {
			return nil, err
		}
		cluster.CertificateAuthority = ""
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	secs := int64(opts.TokenTTL.Seconds())
	tr, err := client.CoreV1().ServiceAccounts(opts.Namespace).CreateToken(ctx, opts.ServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("request a token for ServiceAccount %s/%s (apply deploy/kubernetes/member-rbac.yaml in the member first): %w", opts.Namespace, opts.ServiceAccount, err)
	}
	out := clientcmdapi.NewConfig()
	out.Clusters[opts.Member] = cluster
	out.AuthInfos[opts.ServiceAccount] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	out.Contexts[opts.Member] = &clientcmdapi.Context{Cluster: opts.Member, AuthInfo: opts.ServiceAccount}
	out.CurrentContext = opts.Member
	b, err := clientcmd.Write(*out)
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "eastwest-remote-" + opts.Member, Namespace: opts.Namespace,
			Labels: map[string]string{LabelCluster: opts.Member},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{SecretKubeconfigKey: b},
	}, nil
}
