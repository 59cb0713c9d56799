package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/tools/web"
)

// webFlags are the flags of the live statistics server, shared by every
// long-running subcommand.
type webFlags struct {
	addr, cert, key *string
	insecure        *bool
}

func addWebFlags(fs *flag.FlagSet) webFlags {
	return webFlags{
		addr: fs.String("http", "", "serve live statistics on `HOST:PORT`: a page at /, JSON at /stats, a WebSocket at /ws, Prometheus metrics at /metrics (a non-loopback address needs --tls-cert or --insecure-http)"),
		cert: fs.String("tls-cert", "", "with --http: serve HTTPS with this PEM certificate chain `FILE` (TLS 1.2+)"),
		key:  fs.String("tls-key", "", "with --http: the PEM private key `FILE` of --tls-cert"),
		insecure: fs.Bool("insecure-http", false,
			"with --http: allow plain HTTP on a non-loopback address (statistics readable by anyone on the path)"),
	}
}

// start starts the server if --http was given and prints its URL; it
// returns a nil *web.Server otherwise, whose methods do nothing. A bad
// combination of flags is a usage error (exit status 2).
func (w webFlags) start(fs *flag.FlagSet, role string, stderr io.Writer, log zerolog.Logger) (*web.Server, error) {
	if *w.addr == "" {
		if *w.cert != "" || *w.key != "" || *w.insecure {
			return nil, usageError(fs, "--tls-cert, --tls-key and --insecure-http go with --http")
		}
		return nil, nil
	}
	srv, err := web.Start(web.Config{
		Addr: *w.addr, CertFile: *w.cert, KeyFile: *w.key, AllowInsecure: *w.insecure, Role: role, Logger: log,
	})
	if errors.Is(err, web.ErrInsecure) || errors.Is(err, web.ErrConfig) {
		return nil, usageError(fs, "--http: %v", err)
	}
	if err != nil {
		return nil, fmt.Errorf("--http: %w", err)
	}
	fmt.Fprintf(stderr, "live statistics: %s (Prometheus: %smetrics)\n", srv.URL(), srv.URL())
	return srv, nil
}
