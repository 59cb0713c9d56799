package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadFlagsOneLine runs every subcommand with bad flag values in this
// process: each must exit 2, before starting anything, with exactly one
// line on stderr that names the flag and points at --help.
func TestBadFlagsOneLine(t *testing.T) {
	dir := t.TempDir()
	capFile, err := filepath.Abs(filepath.Join("..", "..", "testdata", "pcap", "gen__noise.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	// A case that wrongly went ahead must not write into the source tree.
	t.Chdir(dir)
	unwritable := filepath.Join(dir, "no", "such", "dir", "stats.json")
	keyFile := filepath.Join(dir, "missing.key")
	to := []string{"--to", "127.0.0.1:9"}
	listen := []string{"--listen", "127.0.0.1:0"}
	cases := []struct {
		args []string
		flag string // the line must contain this
	}{
		// send
		{[]string{"send"}, "--to"},
		{append([]string{"send", "--rate", "NaN"}, to...), "--rate"},
		{append([]string{"send", "--rate", "+Inf"}, to...), "--rate"},
		{append([]string{"send", "--rate", "-1"}, to...), "--rate"},
		{append([]string{"send", "--max-mbit", "Inf"}, to...), "--max-mbit"},
		{append([]string{"send", "--max-mbit", "-2"}, to...), "--max-mbit"},
		{append([]string{"send", "--linger", "-1s"}, to...), "--linger"},
		{append([]string{"send", "--linger", "soon"}, to...), "-linger"},
		{append([]string{"send", "--count", "-5", "--gen", "market"}, to...), "--count"},
		{append([]string{"send", "--gen", "stocks"}, to...), "--gen"},
		{append([]string{"send", "--gen", "market", "--size", "10"}, to...), "--size"},
		{append([]string{"send", "--stream", "99999999999"}, to...), "--stream"},
		{append([]string{"send", "--fec", "3,2", "--fec-interleave", "0"}, to...), "--fec-interleave"},
		{append([]string{"send", "--fec", "3,2", "--fec-interleave", "999"}, to...), "--fec-interleave"},
		{append([]string{"send", "--cc", "maybe"}, to...), "--cc"},
		{append([]string{"send", "--log-level", "loud"}, to...), "--log-level"},
		{append([]string{"send", "--stats", unwritable}, to...), "--stats"},
		{append([]string{"send", "--stats", dir}, to...), "--stats"},
		{append([]string{"send", "--stats-interval", "1s"}, to...), "--stats-interval"},
		{append([]string{"send", "--stats", filepath.Join(dir, "s.json"), "--stats-interval", "-1s"}, to...), "--stats-interval"},
		{append([]string{"send", "--key-file", "-"}, to...), "--key-file"},
		{append([]string{"send", "--key-file", keyFile}, to...), "--key-file"},
		{[]string{"send", "--to", "no-such-host.invalid:9000"}, "--to"},
		{[]string{"send", "--to", "127.0.0.1"}, "--to"},
		// recv
		{[]string{"recv"}, "--listen"},
		{append([]string{"recv", "--idle", "-1s"}, listen...), "--idle"},
		{append([]string{"recv", "--latency", "0s"}, listen...), "--latency"},
		{append([]string{"recv", "--report-interval", "-5ms"}, listen...), "--report-interval"},
		{append([]string{"recv", "--stats", "-"}, listen...), "--stats"},
		{append([]string{"recv", "--stats", unwritable, "--stats-interval", "100ms"}, listen...), "--stats"},
		{append([]string{"recv", "--flows", "f.json"}, listen...), "--flows"},
		{append([]string{"recv", "--framing", "xml"}, listen...), "--framing"},
		{[]string{"recv", "--listen", "no-such-host.invalid:0"}, "--listen"},
		{append([]string{"recv", "--key-file", keyFile}, listen...), "--key-file"},
		// demo
		{[]string{"demo", "--rate", "NaN"}, "--rate"},
		{[]string{"demo", "--rate", "0"}, "--rate"},
		{[]string{"demo", "--duration", "-1s"}, "--duration"},
		{[]string{"demo", "--size", "-3"}, "--size"},
		{[]string{"demo", "--size", "10"}, "--size"},
		{[]string{"demo", "--gen", "stocks"}, "--gen"},
		{[]string{"demo", "--fwd", "loss 200%"}, "--fwd"},
		{[]string{"demo", "--rev", "bogus"}, "--rev"},
		{[]string{"demo", "--key-file", keyFile}, "--key-file"},
		{[]string{"demo", "--receivers", "0"}, "--receivers"},
		{[]string{"demo", "--receivers", "17"}, "--receivers"},
		{[]string{"demo", "--receivers", "3", "--stats", "-"}, "--receivers"},
		{[]string{"demo", "--receivers", "3", "--http", "127.0.0.1:0"}, "--receivers"},
		{append([]string{"recv", "--join-history", "5"}, listen...), "JoinHistory"},
		{[]string{"recv", "--listen", "239.1.2.3:0", "--join-history", "2000"}, "JoinHistory"},
		// replay
		{[]string{"replay", "--to", "127.0.0.1:9"}, "FILE"},
		{[]string{"replay", capFile}, "--to"},
		{append([]string{"replay", capFile, "--speed", "NaN"}, to...), "--speed"},
		{append([]string{"replay", capFile, "--speed", "Inf"}, to...), "--speed"},
		{append([]string{"replay", capFile, "--speed", "0"}, to...), "--speed"},
		{append([]string{"replay", capFile, "--pps", "-1"}, to...), "--pps"},
		{append([]string{"replay", capFile, "--pps", "NaN"}, to...), "--pps"},
		{append([]string{"replay", capFile, "--loop", "-1"}, to...), "--loop"},
		{append([]string{"replay", capFile, "--max-gap", "-1s"}, to...), "--max-gap"},
		{append([]string{"replay", capFile, "--linger", "-1s"}, to...), "--linger"},
		{append([]string{"replay", capFile, "--max-flows", "-1"}, to...), "--max-flows"},
		{append([]string{"replay", capFile, "--filter", "port"}, to...), "--filter"},
		{append([]string{"replay", capFile, "--stats", unwritable}, to...), "--stats"},
		{append([]string{"replay", capFile, "--flows-out", unwritable}, to...), "--flows-out"},
		{append([]string{"replay", capFile, "--stats", "-", "--flows-out", "-"}, to...), "--flows-out"},
		{append([]string{"replay", filepath.Join(dir, "missing.pcap")}, to...), "missing.pcap"},
		{[]string{"replay", capFile, "--to", "127.0.0.1:notaport"}, "--to"},
		// bench
		{[]string{"bench", "--runs", "0"}, "--runs"},
		{[]string{"bench", "--duration", "-1s"}, "--duration"},
		{[]string{"bench", "--only", "nosuch"}, "--only"},
		{[]string{"bench", "--save", unwritable}, "--save"},
		{[]string{"bench", "--plot", capFile}, "--plot"},
		// sim
		{[]string{"sim", "--messages", "-1"}, "--messages"},
		{[]string{"sim", "--only", "nosuch"}, "--only"},
		{[]string{"sim", "--scenarios", filepath.Join(dir, "missing.json")}, "--scenarios"},
		{[]string{"sim", "--scenarios", "-"}, "--scenarios"}, // stdin holds no scenario file
		{[]string{"sim", "--plot", filepath.Join(capFile, "plots")}, "--plot"},
		// keygen
		{[]string{"keygen"}, "FILE"},
		{[]string{"keygen", "-"}, "FILE"},
		{[]string{"keygen", "a", "b"}, "FILE"},
		// netem
		{[]string{"netem", "--to", "127.0.0.1:9"}, "--listen"},
		{[]string{"netem", "--listen", "127.0.0.1:0"}, "--to"},
		{[]string{"netem", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:9", "--fwd", "loss lots"}, "--fwd"},
		{[]string{"netem", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:9", "--max-clients", "-1"}, "--max-clients"},
		{[]string{"netem", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:9", "--idle-timeout", "-1s"}, "--idle-timeout"},
		{[]string{"netem", "--listen", "127.0.0.1:0", "--to", "127.0.0.1"}, "--to"},
		{[]string{"netem", "--listen", "127.0.0.1:notaport", "--to", "127.0.0.1:9"}, "--listen"},
		// soak
		{[]string{"soak", "--rate", "NaN"}, "--rate"},
		{[]string{"soak", "--rate", "-1"}, "--rate"},
		{[]string{"soak", "--duration", "0s"}, "--duration"},
		{[]string{"soak", "--interval", "-1s"}, "--interval"},
		{[]string{"soak", "--drain", "-1s"}, "--drain"},
		{[]string{"soak", "--size", "5"}, "--size"},
		{[]string{"soak", "--fwd", "loss 2000%"}, "--fwd"},
		{[]string{"soak", "--seed", "0"}, "--seed"},
		// version and the top level
		{[]string{"version", "extra"}, "extra"},
		{[]string{"bogus"}, "bogus"},
		{[]string{"send", "--nope"}, "-nope"},
	}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var stdout, stderr bytes.Buffer
		code := run(ctx, c.args, strings.NewReader(""), &stdout, &stderr)
		cancel()
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], c.flag) || !strings.Contains(lines[0], "help") {
			t.Errorf("telewire %q: exit %d, want 2 and one line naming %s; stderr:\n%s", c.args, code, c.flag, stderr.String())
		}
	}
	// Nothing was created next to the unwritable path, and no stats
	// file from the refused runs.
	if _, err := os.Stat(filepath.Join(dir, "s.json")); err == nil {
		t.Error("a refused run created its --stats file")
	}
}
