package main

import (
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version and revision are the release and the commit, set at build
// time (make image: -ldflags "-X main.version=... -X main.revision=...");
// without them the revision comes from the Go build info when it has one.
var (
	version  = "dev"
	revision = ""
)

// runVersion prints the version, the source revision the binary was
// built from (from the Go build info) and the Go toolchain and platform.
func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, stderr, "xds version", "Prints the version, the source revision, the Go toolchain and the platform (also: xds --version).")
	if code, ok := parseNoArgs(fs, args, stderr, ""); !ok {
		return code
	}
	rev := buildRevision()
	fmt.Fprintf(stdout, "xds %s (revision %s, %s, %s/%s)\n", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}

// buildRevision is the source revision the binary was built from: the
// one set at build time, else the Go build info's (with -dirty for a
// modified tree), else "unknown".
func buildRevision() string {
	rev, modified := revision, false
	if info, ok := debug.ReadBuildInfo(); ok && rev == "" {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	if modified {
		rev += "-dirty"
	}
	return rev
}
