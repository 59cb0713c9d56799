// Command gen writes the Wireshark dissector generated from the layouts
// of package wireshark: go generate ./tools/wireshark.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/telewire/telewire/tools/wireshark"
)

func main() {
	out := flag.String("o", "telewire.lua", "output `FILE`")
	flag.Parse()
	if err := os.WriteFile(*out, wireshark.Lua(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
