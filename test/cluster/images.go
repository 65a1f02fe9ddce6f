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

// EchoImage is the test pods' HTTP server (test/cluster/echo).
const EchoImage = "eastwest.test/echo:1"

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
		images := map[string]v1.Image{}
		for ref, pkg := range map[string]string{SandboxImage: "pause", EchoImage: "echo"} {
			bin, err := Static(dir, "github.com/eastwest-dev/eastwest/test/cluster/"+pkg)
			if err != nil {
				baseErr = err
				return
			}
			b, err := os.ReadFile(bin)
			if err != nil {
				baseErr = err
				return
			}
			if images[ref], err = image.Files(map[string]image.File{"/" + pkg: {Data: b, Mode: 0o755}}, []string{"/" + pkg}, "linux", runtime.GOARCH, time.Unix(0, 0)); err != nil {
				baseErr = err
				return
			}
		}
		baseArchive = filepath.Join(dir, "base.tar")
		baseErr = image.Archive(images, baseArchive, time.Unix(0, 0))
	})
	return baseArchive, baseErr
}

// Static builds a Go command of this module as a static binary into dir
// and returns its path.
func Static(dir, pkg string) (string, error) {
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg) //nolint:gosec // the module's own packages
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w: %s", pkg, err, b)
	}
	return out, nil
}
