package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/telewire/telewire/tools/app"
)

func runVersion(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "[--json]",
		`Prints the module version and the VCS revision this binary was built from (from
runtime/debug.ReadBuildInfo): "(devel)" and the commit for a "go build" in a git
checkout, the tag for "go install ...@vX.Y.Z". "go run" does not stamp the revision.
"telewire --version" is the same.`, stderr)
	asJSON := fs.Bool("json", false, "print the version as a JSON object (the \"version\" member of every JSON output)")
	if err := parse(fs, args); err != nil {
		return err
	}
	v := app.BuildVersion()
	if *asJSON {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintf(stdout, "telewire %s\n", v)
	return err
}
