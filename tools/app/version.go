package app

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version identifies the build of the running program: the module version
// and the version-control revision the go command stamped into it. Every
// JSON document the command writes carries one, so a result can be traced
// to the code that produced it.
type Version struct {
	Module   string `json:"module"`             // main module path; "" if the binary carries no build info
	Version  string `json:"version"`            // module version: a tag for `go install …@v1.2.3`, "(devel)" for a local build
	Revision string `json:"revision,omitempty"` // vcs.revision: the commit built from, when built in a checkout
	Time     string `json:"time,omitempty"`     // vcs.time: that commit's time (RFC 3339)
	Modified bool   `json:"modified,omitempty"` // vcs.modified: the checkout had uncommitted changes
	Go       string `json:"go"`                 // toolchain version
}

// BuildVersion reads the running binary's build information
// (runtime/debug.ReadBuildInfo). `go build` in a git checkout records the
// revision; `go run` and `go test` do not (they build without VCS
// stamping), and then Revision is empty.
func BuildVersion() Version {
	bi, ok := debug.ReadBuildInfo()
	return versionOf(bi, ok)
}

// versionOf reads a Version out of build information.
func versionOf(bi *debug.BuildInfo, ok bool) Version {
	v := Version{Go: runtime.Version()}
	if !ok || bi == nil {
		return v
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	v.Module, v.Version = bi.Main.Path, bi.Main.Version
	if v.Version == "" {
		v.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the one-line form `telewire version` prints, for example
// "github.com/telewire/telewire (devel) rev 1a2b3c4d5e6f (modified) go1.26.0".
func (v Version) String() string {
	mod := v.Module
	if mod == "" {
		mod = "telewire (no build information)"
	}
	s := fmt.Sprintf("%s %s", mod, v.Version)
	switch {
	case v.Revision != "":
		s += " rev " + v.Revision
		if v.Time != "" {
			s += " " + v.Time
		}
		if v.Modified {
			s += " (modified)"
		}
	default:
		s += " rev unknown (built without VCS stamping, e.g. by go run)"
	}
	return s + " " + v.Go
}
