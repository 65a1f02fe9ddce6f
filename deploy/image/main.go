// Command image builds the project's container image (make image): one
// OCI image index over the xds binaries it is given, written as an OCI
// layout and an archive of it. See internal/image.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/eastwest-dev/eastwest/internal/image"
)

func main() {
	var o image.Options
	bins := flag.String("binaries", "", "comma-separated os/arch=path of static xds binaries")
	flag.StringVar(&o.Name, "name", "docker.io/eastwest/xds:dev", "the image reference the layout and archive carry")
	flag.StringVar(&o.Version, "version", "dev", "the version label")
	flag.StringVar(&o.Revision, "revision", "", "the source revision label (the commit)")
	created := flag.String("created", "0", "the image's time, Unix seconds (the commit's time: reproducible)")
	dir := flag.String("layout", ".cache/image/oci", "where to write the OCI layout")
	archive := flag.String("archive", ".cache/image/xds.oci.tar", "where to write the archive of the layout (empty: none)")
	flag.Parse()
	secs, err := strconv.ParseInt(*created, 10, 64)
	if err != nil {
		fail(fmt.Errorf("-created: %w", err))
	}
	o.Created = time.Unix(secs, 0).UTC()
	o.Binaries = map[string]string{}
	for _, b := range strings.Split(*bins, ",") {
		platform, path, ok := strings.Cut(b, "=")
		if !ok {
			fail(fmt.Errorf("-binaries: %q is not os/arch=path", b))
		}
		o.Binaries[platform] = path
	}
	idx, err := image.Build(o)
	if err != nil {
		fail(err)
	}
	if err := image.Write(idx, o, *dir, *archive); err != nil {
		fail(err)
	}
	d, err := idx.Digest()
	if err != nil {
		fail(err)
	}
	fmt.Printf("%s %s\nlayout %s, archive %s\n", o.Name, d, *dir, *archive)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "image:", err)
	os.Exit(1)
}
