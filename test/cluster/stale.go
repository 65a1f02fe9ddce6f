package cluster

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// recordDir holds a record of every running cluster (a tmpfs: a reboot
// clears it). A test process killed before its cleanup (SIGKILL, a
// timeout's panic, Ctrl-C) leaves its clusters' containers, mounts,
// cgroups and namespaces behind; the next start sweeps them by their
// records.
const recordDir = "/run/eastwest-test-clusters"

// record is what sweeping a dead test's cluster needs.
type record struct {
	PID    int      `json:"pid"`
	Dir    string   `json:"dir"`
	Cgroup string   `json:"cgroup"`
	Netns  []string `json:"netns"`
}

func (c *Cluster) recordPath() string {
	return filepath.Join(recordDir, fmt.Sprintf("%d-%s.json", os.Getpid(), c.cgroup))
}

// writeRecord records the cluster (netns: its namespaces, the node's
// and any WAN's).
func (c *Cluster) writeRecord(netns ...string) error {
	if err := os.MkdirAll(recordDir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(record{PID: os.Getpid(), Dir: c.Dir, Cgroup: c.cgroup, Netns: netns})
	if err != nil {
		return err
	}
	return os.WriteFile(c.recordPath(), b, 0o600)
}

// sweepStale tears down the clusters of test processes that are gone,
// and says what it swept.
func sweepStale() []string {
	files, _ := filepath.Glob(filepath.Join(recordDir, "*.json"))
	var swept []string
	for _, f := range files {
		b, err := os.ReadFile(f) //nolint:gosec // the harness's records
		if err != nil {
			continue
		}
		var r record
		if json.Unmarshal(b, &r) != nil || r.PID <= 0 || !strings.HasPrefix(r.Cgroup, "ewc-") {
			_ = os.Remove(f)
			continue
		}
		if alive(r.PID) {
			continue
		}
		for _, g := range []string{r.Cgroup, r.Cgroup + "-runtime"} {
			killCgroup(g)
		}
		if r.Dir != "" && filepath.IsAbs(r.Dir) {
			unmountUnder(r.Dir)
			removeLogLinks(r.Dir)
			_ = os.RemoveAll(r.Dir)
		}
		removeCgroups(r.Cgroup)
		removeCgroups(r.Cgroup + "-runtime")
		for _, n := range r.Netns {
			if strings.HasPrefix(n, "ewt-") {
				_ = exec.Command("ip", "netns", "del", n).Run() //nolint:gosec // the harness's own names
			}
		}
		_ = os.Remove(f)
		swept = append(swept, r.Dir)
	}
	return swept
}

// alive says whether a process exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
