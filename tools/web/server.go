package web

import (
	"bytes"
	"context"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/tools/metrics"
	"github.com/telewire/telewire/tools/netem"
)

//go:embed assets
var assets embed.FS

// Defaults of Config, and the server's own bound.
const (
	// DefaultInterval is the default of Config.Interval: four pushes a
	// second.
	DefaultInterval = 250 * time.Millisecond
	// DefaultMaxStreams is the default of Config.MaxStreams.
	DefaultMaxStreams = 16
	// MaxClients is how many WebSocket clients are served at once; more
	// get 503 Service Unavailable.
	MaxClients = 32
)

// ErrInsecure is returned by Start for a non-loopback address without TLS
// and without Config.AllowInsecure: statistics are not exposed to the
// network in clear text by accident.
var ErrInsecure = errors.New("web: refusing to serve statistics in clear text on a non-loopback address (give a TLS certificate, or allow it explicitly)")

// ErrConfig wraps every other configuration mistake Start finds (a bad
// address, an unreadable certificate).
var ErrConfig = errors.New("web: bad configuration")

// Config configures a Server. The zero value of each field but Addr is its
// default.
type Config struct {
	// Addr is the HOST:PORT to listen on (required; port 0 picks one).
	Addr string
	// CertFile and KeyFile, both or neither, are a PEM certificate chain
	// and its key: the server then speaks HTTPS only, TLS 1.2 or later.
	CertFile, KeyFile string
	// AllowInsecure permits plain HTTP on a non-loopback address.
	AllowInsecure bool
	// Role names the process on the page (send, recv, netem, ...).
	Role string
	// Interval is how often /ws pushes a snapshot; default
	// DefaultInterval.
	Interval time.Duration
	// MaxStreams is how many streams the page shows before summing the
	// rest into "other"; default DefaultMaxStreams. (The metrics' stream
	// labels have their own bound, metrics.DefaultMaxStreams.)
	MaxStreams int
	// Logger receives rare events (client errors); default zerolog.Nop().
	Logger zerolog.Logger
}

// Server serves, on one address:
//
//	/         the live page (embedded; no external resources)
//	/ws       a WebSocket pushing a Snapshot as JSON every Interval
//	/stats    the current Snapshot as JSON
//	/metrics  the Prometheus exposition of every added source, plus the
//	          Go runtime and process collectors
//
// Sources are added after start, as the command creates them. A Server is
// safe for concurrent use.
type Server struct {
	cfg  Config
	url  string
	ln   net.Listener
	http *http.Server
	reg  *prometheus.Registry
	done chan struct{} // closed when Serve has returned

	closing   chan struct{} // closed by Close: WebSocket handlers leave
	closeOnce sync.Once
	handlers  sync.WaitGroup // WebSocket handlers (hijacked, so Shutdown does not wait)

	mu      sync.Mutex
	srcs    sources
	clients int
}

// Start validates cfg, listens and serves in the background until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, fmt.Errorf("%w: a TLS certificate needs its key and a key its certificate", ErrConfig)
	}
	secure := cfg.CertFile != ""
	loop, err := isLoopback(cfg.Addr)
	if err != nil {
		return nil, err
	}
	if !secure && !loop && !cfg.AllowInsecure {
		return nil, fmt.Errorf("%w: %s", ErrInsecure, cfg.Addr)
	}
	var tlsCfg *tls.Config
	if secure {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, ln: ln, reg: prometheus.NewRegistry(), done: make(chan struct{}), closing: make(chan struct{})}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	scheme := "http"
	if secure {
		ln = tls.NewListener(ln, tlsCfg)
		scheme = "https"
	}
	s.url = scheme + "://" + s.ln.Addr().String() + "/"

	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /", securityHeaders(http.FileServerFS(static)))
	mux.HandleFunc("GET /stats", s.serveStats)
	mux.HandleFunc("GET /ws", s.serveWS)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		TLSConfig:         tlsCfg,
		ErrorLog:          log.New(debugWriter{cfg.Logger}, "web: ", 0),
	}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Error().Err(err).Msg("web: server stopped")
		}
	}()
	return s, nil
}

// isLoopback reports whether every address HOST:PORT names is a loopback
// address. An empty host (all interfaces) is not.
func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("%w: address %q: %v", ErrConfig, addr, err)
	}
	switch host {
	case "":
		return false, nil // every interface
	case "localhost":
		return true, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		// A name: loopback only if it resolves to loopback addresses alone.
		ips, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
		if err != nil {
			return false, fmt.Errorf("%w: address %q: %v", ErrConfig, addr, err)
		}
		for _, ip := range ips {
			if !ip.IsLoopback() {
				return false, nil
			}
		}
		return len(ips) > 0, nil
	}
	return ip.IsLoopback(), nil
}

// securityHeaders forbids the page from loading anything from elsewhere.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// URL returns the address of the live page, e.g. "http://127.0.0.1:8080/".
func (s *Server) URL() string { return s.url }

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Registry returns the registry /metrics serves, for further collectors.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// AddSender reports on a sender whose destination is peer. On a nil
// Server (no --http given) it does nothing, as do AddReceiver and
// AddRelay.
func (s *Server) AddSender(x metrics.SenderSource, peer string) {
	if s == nil {
		return
	}
	s.register(metrics.NewSenderCollector(x, metrics.Options{Peer: peer}))
	s.mu.Lock()
	s.srcs.senders = append(s.srcs.senders, senderSource{src: x, peer: peer})
	s.mu.Unlock()
}

// AddReceiver reports on a receiver.
func (s *Server) AddReceiver(x metrics.ReceiverSource) {
	if s == nil {
		return
	}
	s.register(metrics.NewReceiverCollector(x, metrics.Options{}))
	s.mu.Lock()
	s.srcs.receivers = append(s.srcs.receivers, x)
	s.mu.Unlock()
}

// AddRelay reports on a netem relay.
func (s *Server) AddRelay(x metrics.RelaySource) {
	if s == nil {
		return
	}
	s.register(metrics.NewRelayCollector(x))
	s.mu.Lock()
	s.srcs.relays = append(s.srcs.relays, x)
	s.mu.Unlock()
}

// AddCollector exports c at /metrics: any further figures the process
// has (the NATS bridge's, for instance), which the page does not show.
// On a nil Server it does nothing.
func (s *Server) AddCollector(c prometheus.Collector) {
	if s == nil {
		return
	}
	s.register(c)
}

// register adds c to the registry; a second source of the same kind
// cannot share the metric names, so it is shown on the page only.
func (s *Server) register(c prometheus.Collector) {
	if err := s.reg.Register(c); err != nil {
		s.cfg.Logger.Warn().Err(err).Msg("web: a second source of this kind is not exported to /metrics")
	}
}

// Snapshot returns the figures the page shows now.
func (s *Server) Snapshot() Snapshot {
	s.mu.Lock()
	srcs := sources{
		senders:   append([]senderSource(nil), s.srcs.senders...),
		receivers: append([]interface{ Stats() receiver.Stats }(nil), s.srcs.receivers...),
		relays:    append([]interface{ Stats() netem.RelayStats }(nil), s.srcs.relays...),
	}
	s.mu.Unlock()
	return snapshot(&srcs, s.cfg.Role, time.Now().UnixMilli(), s.cfg.MaxStreams)
}

func (s *Server) serveStats(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(s.Snapshot())
}

// serveWS pushes a snapshot every Interval until the client goes away or
// the server closes.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	refuse := s.clients >= MaxClients
	select {
	case <-s.closing:
		refuse = true
	default:
	}
	if !refuse {
		s.clients++
		s.handlers.Add(1)
	}
	s.mu.Unlock()
	if refuse {
		http.Error(w, "too many live clients", http.StatusServiceUnavailable)
		return
	}
	defer func() {
		s.mu.Lock()
		s.clients--
		s.mu.Unlock()
		s.handlers.Done()
	}()
	c, err := websocket.Accept(w, r, nil) // same-origin only
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := c.CloseRead(r.Context()) // the client sends nothing; this notices it leaving
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := wsjson.Write(wctx, c, s.Snapshot())
		cancel()
		if err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			// Not Close: its handshake waits up to 5 s for the peer's
			// answer, and the server is going away now.
			return
		case <-t.C:
		}
	}
}

// Close stops the server: listeners, page clients and WebSockets. It
// returns once every handler has finished. Closing a nil Server does
// nothing.
func (s *Server) Close() error {
	if s == nil {
		return nil
	}
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.closing)
		s.mu.Unlock()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if err != nil {
		err = s.http.Close()
	}
	<-s.done
	s.handlers.Wait()
	return err
}

// debugWriter turns net/http's own log lines (TLS handshake errors from
// scanners, for instance) into debug events of the injected logger.
type debugWriter struct{ l zerolog.Logger }

func (d debugWriter) Write(p []byte) (int, error) {
	d.l.Debug().Msg(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
