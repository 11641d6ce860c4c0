// Package buildinfo says which release of the store this binary is: its
// version, the source revision it was built from and whether that tree had
// local changes. Every part reports it (the stamps registry, health reports,
// telemetry resources, `contoso version`), so a release is traceable from a
// running process back to an artifact and a commit.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set at link time for a release build:
//
//	go build -ldflags "-X github.com/contoso/shoes/internal/buildinfo.version=v1.4.0" ./cmd/contoso
//
// Empty: the version is worked out from the build information.
var version string

// Info is what a binary knows about its own build.
type Info struct {
	Version  string `json:"version"`            // see Version
	Revision string `json:"revision,omitempty"` // the VCS revision, when the build recorded one
	Modified bool   `json:"modified,omitempty"` // the tree had uncommitted changes
	Go       string `json:"go"`                 // the Go toolchain
}

// Read returns the binary's build information.
func Read() Info {
	info := Info{Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	switch {
	case version != "":
		info.Version = version
	case ok && bi.Main.Version != "" && bi.Main.Version != "(devel)":
		info.Version = bi.Main.Version
	case info.Revision != "":
		info.Version = "dev+" + short(info.Revision)
		if info.Modified {
			info.Version += ".dirty"
		}
	default:
		info.Version = "dev"
	}
	return info
}

// Version is the release this binary is: the version stamped at link
// time, else the module version, else "dev+<revision>" (".dirty" when the
// tree had changes), else "dev".
func Version() string { return Read().Version }

func short(rev string) string {
	rev = strings.TrimSpace(rev)
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
