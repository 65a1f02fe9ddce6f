package cluster

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startContainerd writes containerd's configuration (everything under the
// cluster's folder: root, state, socket, runc's root, the CNI
// configuration and the pods' network namespaces), starts it in the
// runtime's cgroup and imports the images archive.
func (c *Cluster) startContainerd(images string) error {
	dir := c.file("containerd")
	cfg := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: runc cannot lower a pod's oom_score_adj.
  restrict_oom_score_adj = true
  enable_selinux = false
  # The pods' network namespaces under the state folder, not the host's
  # /var/run/netns: teardown finds them with the rest.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%[4]q]
    conf_dir = %[5]q
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        Root = %[6]q
        SystemdCgroup = false
[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[7]q
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
[plugins.'io.containerd.internal.v1.opt']
  path = %[8]q
# NRI's socket would be the host's, shared by every cluster.
[plugins.'io.containerd.nri.v1.nri']
  disable = true
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.socket(), c.bin.CNI, c.file("cni/net.d"),
		filepath.Join(dir, "runc"), SandboxImage, filepath.Join(dir, "opt"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	cni := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "pods",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, c.file("cni/ipam"), c.PodCIDR)
	if err := os.WriteFile(c.file("cni/net.d/10-pods.conflist"), []byte(cni), 0o600); err != nil {
		return err
	}
	// containerd finds its shim and runc on PATH.
	path := c.bin.Node + ":" + os.Getenv("PATH")
	p, err := c.nodeRun("containerd", "env", "PATH="+path, filepath.Join(c.bin.Node, "containerd"), "--config", filepath.Join(dir, "config.toml"))
	if err != nil {
		return err
	}
	// nsenter execs env, which execs containerd: one PID.
	if err := c.intoRuntimeCgroup(p.Pid()); err != nil {
		return fmt.Errorf("%s: containerd's cgroup: %w", c.Name, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := c.ctr("version"); err == nil {
			break
		} else if time.Now().After(deadline) {
			return fmt.Errorf("%s: containerd not answering: %w (log: %s)", c.Name, err, c.file("containerd.log"))
		}
		if done, err := p.Exited(); done {
			return fmt.Errorf("%s: containerd exited: %w (log: %s)", c.Name, err, c.file("containerd.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c.Import(images)
}

func (c *Cluster) socket() string { return c.file("containerd/containerd.sock") }

// ctr runs containerd's client against the cluster's containerd, in the
// Kubernetes namespace.
func (c *Cluster) ctr(args ...string) error {
	out, err := exec.Command(filepath.Join(c.bin.Node, "ctr"), append([]string{"--address", c.socket(), "--namespace", "k8s.io"}, args...)...).CombinedOutput() //nolint:gosec // the harness's commands
	if err != nil {
		return fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Import loads an image archive (OCI, each image named by its
// io.containerd.image.name annotation) into the node: pods then run its
// images with imagePullPolicy IfNotPresent or Never, with no registry.
func (c *Cluster) Import(archive string) error {
	return c.ctr("images", "import", "--all-platforms", archive)
}

// Tag names an imported image also as ref (ctr images tag): the image
// a chart names by default, say, run from the archive of another name.
func (c *Cluster) Tag(image, ref string) error {
	return c.ctr("images", "tag", "--force", image, ref)
}

// startKubelet writes the kubelet's configuration and starts it.
func (c *Cluster) startKubelet() error {
	// The resolver of pods with dnsPolicy Default (CoreDNS): TEST-NET-1,
	// which no namespace of the harness routes, so a query forwarded there
	// fails at once and never leaves. Not loopback: the project's Corefile
	// forwards to it, and its loop plugin would stop a CoreDNS that
	// forwards to itself.
	if err := os.WriteFile(c.file("resolv.conf"), []byte("nameserver 192.0.2.53\n"), 0o600); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %q}
authorization: {mode: Webhook}
tlsCertFile: %q
tlsPrivateKeyFile: %q
# This machine kind boots cgroup v1 (hybrid); 1.37 refuses it by default.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /%s
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
failSwapOn: false
clusterDNS: [%q]
clusterDomain: cluster.local
resolvConf: %q
podLogsDir: %q
containerRuntimeEndpoint: unix://%s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: 50Mi, nodefs.available: 1%%, imagefs.available: 1%%, nodefs.inodesFree: 1%%}
registerNode: true
maxPods: 110
`, c.ca.File, c.file("kubelet.crt"), c.file("kubelet.key"), c.cgroup, DNSServiceIP, c.file("resolv.conf"),
		c.file("pod-logs"), c.socket())
	if err := os.WriteFile(c.file("kubelet.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	_, err := c.nodeRun("kubelet", filepath.Join(c.bin.Kube, "kubelet"),
		"--config", c.file("kubelet.yaml"), "--kubeconfig", c.file("kubelet.kubeconfig"),
		"--root-dir", c.file("kubelet"), "--node-ip", c.Node.NSIP, "--hostname-override", c.NodeName)
	return err
}

// killCgroup kills every process in a cgroup and the cgroups under it
// (the pids hierarchy holds them all), until none is left.
func killCgroup(name string) {
	root := filepath.Join("/sys/fs/cgroup/pids", name)
	for range 50 {
		var pids []int
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil //nolint:nilerr // a cgroup gone meanwhile
			}
			b, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
			return nil
		})
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeCgroups removes a cgroup and those under it, deepest first, in
// every hierarchy.
func removeCgroups(name string) {
	for _, h := range v1Hierarchies() {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(h, name), func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
		for _, d := range dirs {
			_ = syscall.Rmdir(d)
		}
	}
}

// unmountUnder lazily unmounts every mount point under dir, deepest
// first (the kubelet's volumes, containerd's snapshots and the pods'
// network namespaces).
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			points = append(points, fields[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// removeLogLinks removes the kubelet's links in /var/log/containers that
// point into dir.
func removeLogLinks(dir string) {
	entries, _ := os.ReadDir("/var/log/containers")
	for _, e := range entries {
		p := filepath.Join("/var/log/containers", e.Name())
		if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, dir) {
			_ = os.Remove(p)
		}
	}
}

// Leftovers lists what of the cluster is still on the machine: processes
// whose command line names its folder, mounts under it, its cgroups, its
// node's network namespace, the route to its pods. Empty after teardown.
func (c *Cluster) Leftovers() []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), c.Dir) {
			out = append(out, "process "+filepath.Base(filepath.Dir(p))+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], c.Dir) {
				out = append(out, "mount "+f[4])
			}
		}
	}
	for _, h := range v1Hierarchies() {
		for _, g := range []string{c.cgroup, c.cgroup + "-runtime"} {
			if _, err := os.Stat(filepath.Join(h, g)); err == nil {
				out = append(out, "cgroup "+filepath.Join(h, g))
			}
		}
	}
	if _, err := os.Stat("/run/netns/" + c.Node.Name); err == nil {
		out = append(out, "network namespace "+c.Node.Name)
	}
	if b, err := exec.Command("ip", "route", "show", c.PodCIDR, "via", c.Node.NSIP).Output(); err == nil && len(strings.TrimSpace(string(b))) > 0 { //nolint:gosec // the harness's CIDR
		out = append(out, "route "+strings.TrimSpace(string(b)))
	}
	if c.LoadBalancerPool.IsValid() {
		if b, err := exec.Command("ip", "route", "show", c.LoadBalancerPool.String(), "via", c.Node.NSIP).Output(); err == nil && len(strings.TrimSpace(string(b))) > 0 { //nolint:gosec // the harness's CIDR
			out = append(out, "route "+strings.TrimSpace(string(b)))
		}
	}
	return out
}
