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
			bin, err := Static(dir, b.module, b.pkg, b.name)
			if err != nil {
				baseErr = err
				return
			}
			data, err := os.ReadFile(bin)
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
