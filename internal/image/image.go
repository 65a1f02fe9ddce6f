// Package image builds the project's container image without Docker: the
// static xds binary for each platform, CA certificates, a non-root user,
// xds on PATH, OCI labels; one OCI image index over the platforms,
// written as an OCI layout and as an archive of it (what `ctr images
// import` and `docker load`-free tools take).
//
// The build is reproducible: every file time, the image's creation time
// and the archive's entries come from Options.Created (the commit's time),
// the tar entries are sorted and owned by fixed IDs, and the CA bundle
// comes from a pinned Go module (golang.org/x/crypto/x509roots/fallback),
// not from the build machine. The same binaries and options give the same
// index digest.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The image's fixed facts.
const (
	// Binary is where xds is in the image, on PATH.
	Binary = "/usr/local/bin/xds"
	// UID is the non-root user the image runs as, GID its group.
	UID = 65532
	GID = 65532
	// CABundle is the CA certificates file (SSL_CERT_FILE).
	CABundle = "/etc/ssl/certs/ca-certificates.crt"
	// Source is the project's repository (the OCI source label).
	Source = "https://github.com/eastwest-dev/eastwest"
)

// Options describe one build.
type Options struct {
	// Binaries are the static xds binaries by platform ("linux/amd64").
	Binaries map[string]string
	// Name is the image reference the layout and archive carry
	// (docker.io/eastwest/xds:0.1.0).
	Name     string
	Version  string
	Revision string
	// Created is every timestamp in the image (the commit's time).
	Created time.Time
}

// Labels are the image's OCI labels.
func (o Options) Labels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "eastwest xds",
		"org.opencontainers.image.description": "Envoy xDS control plane for traffic between Kubernetes clusters",
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
	}
}

// Build makes the image index.
func Build(o Options) (v1.ImageIndex, error) {
	if len(o.Binaries) == 0 {
		return nil, fmt.Errorf("no binaries")
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, platform := range slices.Sorted(maps.Keys(o.Binaries)) {
		osName, arch, ok := strings.Cut(platform, "/")
		if !ok {
			return nil, fmt.Errorf("platform %q is not os/arch", platform)
		}
		img, err := buildImage(o, osName, arch, o.Binaries[platform])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", platform, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: osName, Architecture: arch}},
		})
	}
	return idx, nil
}

func buildImage(o Options, osName, arch, binary string) (v1.Image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	fsTar, err := rootFS(o.Created, bin)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(fsTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: o.Created},
			CreatedBy: "eastwest make image: xds, CA certificates, a non-root user",
		},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = osName, arch
	cfg.Created = v1.Time{Time: o.Created}
	cfg.Config = v1.Config{
		Entrypoint: []string{Binary},
		Cmd:        []string{"serve"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=" + CABundle},
		User:       fmt.Sprintf("%d:%d", UID, GID),
		WorkingDir: "/home/nonroot",
		Labels:     o.Labels(),
	}
	return mutate.ConfigFile(img, cfg)
}

// File is one file of an image built from files (Files).
type File struct {
	Data []byte
	Mode int64
}

// Files is a one-layer image of the files given (path in the image ->
// file; the folders they are in are made), for the platform given,
// running entrypoint: the test images of the real-node clusters (their
// pause, their servers). Times are created, owners root.
func Files(files map[string]File, entrypoint []string, osName, arch string, created time.Time) (v1.Image, error) {
	layer, err := FilesLayer(files, created)
	if err != nil {
		return nil, err
	}
	return Layered([]v1.Layer{layer}, v1.Config{Entrypoint: entrypoint, Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}}, osName, arch, created)
}

// FilesLayer is one layer of the files given (see Files).
func FilesLayer(files map[string]File, created time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for name := range files {
		for d := filepath.Dir(strings.TrimPrefix(name, "/")); d != "." && d != "/"; d = filepath.Dir(d) {
			dirs[d+"/"] = true
		}
	}
	names := slices.Collect(maps.Keys(dirs))
	for name := range files {
		names = append(names, strings.TrimPrefix(name, "/"))
	}
	slices.Sort(names)
	for _, name := range names {
		h := &tar.Header{Name: name, Mode: 0o755, ModTime: created, Format: tar.FormatPAX, Typeflag: tar.TypeDir}
		var data []byte
		if !dirs[name] {
			f := files["/"+name]
			if _, ok := files[name]; ok {
				f = files[name]
			}
			data = f.Data
			h.Mode, h.Typeflag, h.Size = f.Mode, tar.TypeReg, int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, tarball.WithMediaType(types.OCILayer))
}

// TarLayer is a layer made of a tar file (a root filesystem), compressed
// for speed: the Debian layer of the real-node clusters' test images.
func TarLayer(path string) (v1.Layer, error) {
	return tarball.LayerFromFile(path, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestSpeed))
}

// Layered is an image of layers (bottom first) running config, for the
// platform given, created then.
func Layered(layers []v1.Layer, config v1.Config, osName, arch string, created time.Time) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, l := range layers {
		var err error
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{Created: v1.Time{Time: created}}}); err != nil {
			return nil, err
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = osName, arch, v1.Time{Time: created}
	cfg.Config = config
	return mutate.ConfigFile(img, cfg)
}

// Archive writes images as one OCI archive (a tar of an OCI layout),
// each named by its reference: what `ctr images import` takes.
func Archive(images map[string]v1.Image, out string, created time.Time) error {
	dir, err := os.MkdirTemp("", "eastwest-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	for _, ref := range slices.Sorted(maps.Keys(images)) {
		if err := p.AppendImage(images[ref], layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": ref,
			"io.containerd.image.name":          ref,
		})); err != nil {
			return err
		}
	}
	return tarDir(dir, out, created)
}

// rootFS is the layer's tar: sorted, fixed times and owners.
func rootFS(created time.Time, bin []byte) ([]byte, error) {
	type entry struct {
		mode     int64
		uid, gid int
		dir      bool
		data     []byte
	}
	files := map[string]entry{
		"etc/":           {mode: 0o755, dir: true},
		"etc/passwd":     {mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID))},
		"etc/group":      {mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID))},
		"etc/ssl/":       {mode: 0o755, dir: true},
		"etc/ssl/certs/": {mode: 0o755, dir: true},
		CABundle[1:]:     {mode: 0o644, data: caBundle()},
		"home/":          {mode: 0o755, dir: true},
		"home/nonroot/":  {mode: 0o700, dir: true, uid: UID, gid: GID},
		"tmp/":           {mode: 0o1777, dir: true},
		"usr/":           {mode: 0o755, dir: true},
		"usr/local/":     {mode: 0o755, dir: true},
		"usr/local/bin/": {mode: 0o755, dir: true},
		Binary[1:]:       {mode: 0o755, data: bin},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		e := files[name]
		h := &tar.Header{Name: name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: created, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(e.data))}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// caBundle is the NSS roots of the pinned fallback module, as PEM; roots
// with constraints PEM cannot carry (distrusted after a date) are left
// out.
func caBundle() []byte {
	var buf bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
	}
	return buf.Bytes()
}

// Write writes the index as an OCI layout in dir (replacing what is
// there), named o.Name, and an archive of that layout to archive (when
// not empty).
func Write(idx v1.ImageIndex, o Options, dir, archive string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.Name,
		"io.containerd.image.name":          o.Name,
	})); err != nil {
		return err
	}
	if archive == "" {
		return nil
	}
	return tarDir(dir, archive, o.Created)
}

// tarDir writes dir's files into a tar at out: sorted, fixed times and
// owners. out is replaced at once (a file beside it renamed over it), so
// that builds side by side (test binaries in parallel) never read a half
// written archive.
func tarDir(dir, out string, created time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			names = append(names, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(names)
	f, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // gone once renamed
	if err := f.Chmod(0o644); err != nil {
		_ = f.Close()
		return err
	}
	tw := tar.NewWriter(f)
	for _, path := range names {
		rel, _ := filepath.Rel(dir, path)
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: created, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: st.Size()}
		if st.IsDir() {
			h.Name, h.Mode, h.Typeflag, h.Size = h.Name+"/", 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !st.IsDir() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if _, err := tw.Write(b); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}
