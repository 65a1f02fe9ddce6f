package multicluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/cptest"
	"github.com/eastwest-dev/eastwest/internal/testkit"
	"github.com/eastwest-dev/eastwest/pkg/controlplane"
	"github.com/eastwest-dev/eastwest/pkg/mcs"
	"github.com/eastwest-dev/eastwest/pkg/translate"
	"github.com/eastwest-dev/eastwest/test/kube"
)

// An unreachable member blocks the first push and /readyz only until
// --sync-timeout; then the reachable members are served, and the
// unreachable one shows as failing.
func TestSyncTimeoutLetsUnreachableMembersGo(t *testing.T) {
	cs := kube.Start(t, "up")
	up := &member{Cluster: cs[0], mcs: mustMCS(t, cs[0])}
	key := mcs.ServiceKey{Namespace: "sync", Name: "api"}
	up.service(t, clusterIPService(key.Namespace, key.Name))
	up.slice(t, key.Namespace, key.Name, true, "10.6.0.1")
	up.export(t, key.Namespace, key.Name)

	dir := kubeconfigDir(t, cs...)
	b, err := os.ReadFile(filepath.Join(dir, "up.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// A member whose apiserver never answers (nothing listens on port 1).
	down := strings.Replace(string(b), cs[0].URL(), "https://127.0.0.1:1", 1)
	if err := os.WriteFile(filepath.Join(dir, "down.yaml"), []byte(down), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cfg := controlplane.Config{KubeconfigDir: dir}
	cfg.Writer.SyncTimeout = 2 * time.Second
	app := cptest.StartWith(t, cfg)
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("ready after %v, before the sync timeout, with a member that never synced", took)
	}
	if got := servedEndpoints(app, controlplane.ViewName("up", translate.RoleClient), key, 80); len(got) != 1 {
		t.Errorf("served %v, want the reachable member's endpoint", got)
	}
	testkit.Eventually(t, "down shows as failing", func() error {
		for _, s := range app.MemberStatuses() {
			if s.Member == "down" && s.State != "failing" {
				return fmt.Errorf("down is %s", s.State)
			}
		}
		return nil
	})
}
