package image

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"debug/elf"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

func options(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	o := Options{Name: "docker.io/eastwest/xds:1.2.3", Version: "1.2.3", Revision: "abc123", Created: time.Unix(1_700_000_000, 0).UTC(), Binaries: map[string]string{}}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		f := filepath.Join(dir, filepath.Base(p))
		if err := os.WriteFile(f, []byte("xds for "+p), 0o755); err != nil {
			t.Fatal(err)
		}
		o.Binaries[p] = f
	}
	return o
}

// The image is what the chart and the docs assume: one index over
// linux/amd64 and linux/arm64, each running xds (on PATH) as a non-root
// user, with the OCI labels, CA certificates that parse, and the
// platform's own binary; written as a layout that names it.
func TestImage(t *testing.T) {
	o := options(t)
	idx, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "oci")
	if err := Write(idx, o, dir, filepath.Join(t.TempDir(), "xds.tar")); err != nil {
		t.Fatal(err)
	}
	Inspect(t, dir, o.Name, o.Labels(), func(platform string, files map[string][]byte) {
		if string(files[Binary[1:]]) != "xds for "+platform {
			t.Errorf("%s: %s holds %q, want that platform's binary", platform, Binary, files[Binary[1:]])
		}
	})
}

// Two builds of the same binaries and options are the same image, byte
// for byte (the index digest), and so is the archive.
func TestImageIsReproducible(t *testing.T) {
	o := options(t)
	var digests []v1.Hash
	var archives [][]byte
	for range 2 {
		idx, err := Build(o)
		if err != nil {
			t.Fatal(err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
		archive := filepath.Join(t.TempDir(), "xds.tar")
		if err := Write(idx, o, filepath.Join(t.TempDir(), "oci"), archive); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		archives = append(archives, b)
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds: %s and %s", digests[0], digests[1])
	}
	if !slices.Equal(archives[0], archives[1]) {
		t.Error("two builds wrote different archives")
	}
}

// The image make image built (make test builds it first): the same
// checks on the real binaries, each a static ELF executable of its
// platform's architecture.
func TestBuiltImage(t *testing.T) {
	dir := filepath.Join("..", "..", ".cache", "image", "oci")
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		t.Fatalf("no image in %s: run `make image` (%v)", dir, err)
	}
	labels := map[string]string{"org.opencontainers.image.version": "", "org.opencontainers.image.revision": "", "org.opencontainers.image.source": Source, "org.opencontainers.image.created": ""}
	Inspect(t, dir, "", labels, func(platform string, files map[string][]byte) {
		f, err := elf.NewFile(bytes.NewReader(files[Binary[1:]]))
		if err != nil {
			t.Fatalf("%s: %s is not an ELF file: %v", platform, Binary, err)
		}
		want := map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}[platform]
		if f.Machine != want || f.Type != elf.ET_EXEC {
			t.Errorf("%s: %s is %v %v, want an %v executable", platform, Binary, f.Machine, f.Type, want)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: %s is dynamically linked (it asks for an interpreter)", platform, Binary)
			}
		}
	})
}

// Inspect checks an image layout as the chart runs it, and hands each
// platform's files to check: the index named ref (empty: any name), linux/amd64 and
// linux/arm64, xds as the entrypoint on PATH, a non-root user in
// /etc/passwd, the labels, a CA bundle that parses.
func Inspect(t *testing.T, dir, ref string, labels map[string]string, check func(platform string, files map[string][]byte)) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	rm, err := root.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Manifests) != 1 {
		t.Fatalf("the layout's index.json lists %d manifests, want one index", len(rm.Manifests))
	}
	// An empty ref: any name but none.
	if name := rm.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; name == "" || ref != "" && name != ref || rm.Manifests[0].Annotations["io.containerd.image.name"] != name {
		t.Fatalf("the layout's index.json lists %+v, want one index named %q", rm.Manifests, ref)
	}
	idx, err := root.ImageIndex(rm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, m := range im.Manifests {
		platform := m.Platform.OS + "/" + m.Platform.Architecture
		platforms = append(platforms, platform)
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cfg.Config
		if !slices.Equal(c.Entrypoint, []string{Binary}) || c.User != "65532:65532" || !slices.Contains(c.Env, "PATH=/usr/local/bin:/usr/bin:/bin") {
			t.Errorf("%s: entrypoint %v, user %q, env %v; want %s as 65532 with it on PATH", platform, c.Entrypoint, c.User, c.Env, Binary)
		}
		// An empty value in labels: any value but none.
		for k, v := range labels {
			if got := c.Labels[k]; got == "" || v != "" && got != v {
				t.Errorf("%s: label %s = %q, want %q", platform, k, got, v)
			}
		}
		if cfg.OS+"/"+cfg.Architecture != platform {
			t.Errorf("%s: the config says %s/%s", platform, cfg.OS, cfg.Architecture)
		}
		files := layerFiles(t, img)
		if !slices.Contains(splitLines(files["etc/passwd"]), "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin") {
			t.Errorf("%s: /etc/passwd has no user 65532: %q", platform, files["etc/passwd"])
		}
		roots := 0
		for rest := files[CABundle[1:]]; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				t.Errorf("%s: a CA certificate does not parse: %v", platform, err)
			}
			roots++
		}
		if roots < 100 {
			t.Errorf("%s: %d CA certificates", platform, roots)
		}
		check(platform, files)
	}
	slices.Sort(platforms)
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("platforms %v, want linux/amd64 and linux/arm64", platforms)
	}
}

// layerFiles reads an image's regular files and their modes' executable
// bit is checked for the binary.
func layerFiles(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Name == Binary[1:] && h.Mode&0o111 == 0 {
				t.Errorf("%s is not executable (%o)", Binary, h.Mode)
			}
			if h.Typeflag == tar.TypeReg {
				b, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				files[h.Name] = b
			}
		}
		_ = rc.Close()
	}
	return files
}

func splitLines(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return append(out, string(b[start:]))
}
