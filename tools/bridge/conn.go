package bridge

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// Environment variables ConnConfig reads when UserFile is empty: the NATS
// user name and password, so that neither needs to be on a command line.
const (
	EnvUser     = "TELEWIRE_NATS_USER"
	EnvPassword = "TELEWIRE_NATS_PASSWORD"
)

// ErrConfig wraps every configuration error of this package.
var ErrConfig = errors.New("bridge: invalid config")

// ConnConfig says how to reach a NATS server or cluster. The zero value of
// every field is its default; only Servers is required.
type ConnConfig struct {
	// Servers is one or more NATS URLs, comma-separated
	// ("nats://10.0.0.1:4222,nats://10.0.0.2:4222"). The client connects to
	// one and learns the rest of a cluster from it.
	Servers string
	// Name is the connection name the server shows in its monitoring.
	// Default "telewire".
	Name string

	// CredsFile is a NATS credentials file (a user JWT and its NKey seed,
	// as `nsc` writes them).
	CredsFile string
	// UserFile is a file whose first line is "user:password". When empty,
	// the environment variables EnvUser and EnvPassword are used if set.
	UserFile string
	// TLSCA is a PEM file of the certificate authorities that sign the
	// server's certificate; setting it turns TLS on.
	TLSCA string
	// TLSCert and TLSKey are the client's own PEM certificate and key, for
	// servers that verify clients. Set both or neither.
	TLSCert, TLSKey string

	// ReconnectMin is the first wait between attempts to (re)connect;
	// each failed round through the servers doubles it up to ReconnectMax,
	// and each wait is drawn uniformly from its upper half (jitter), so a
	// fleet of bridges does not reconnect in step. Defaults 100 ms and 2 s.
	ReconnectMin, ReconnectMax time.Duration
	// ConnectTimeout bounds one connection attempt. Default 2 s.
	ConnectTimeout time.Duration

	// Logger receives connection events (disconnected, reconnected). The
	// zero value discards.
	Logger zerolog.Logger
}

// Conn is a NATS connection that keeps trying: Connect returns at once even
// when no server answers yet, and a lost connection is re-established in
// the background, with back-off and jitter, until Close.
type Conn struct {
	*nats.Conn

	disconnects atomic.Uint64
	reconnects  atomic.Uint64
	changed     chan struct{} // signalled on connect/reconnect; capacity 1
}

// Disconnects returns how often the connection was lost.
func (c *Conn) Disconnects() uint64 { return c.disconnects.Load() }

// Reconnects returns how often a connection was (re-)established after a
// loss or a failed first attempt.
func (c *Conn) Reconnects() uint64 { return c.reconnects.Load() }

// Connected returns a channel that receives a value (capacity one, so
// signals coalesce) each time the connection comes up.
func (c *Conn) Connected() <-chan struct{} { return c.changed }

// Connect starts connecting as cfg says and returns without waiting for a
// server: use IsConnected or Connected to learn when it is up. It fails
// only on a configuration error (an unreadable credentials file, a bad URL).
func Connect(cfg ConnConfig) (*Conn, error) {
	opts, c, err := cfg.options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(cfg.Servers, opts...)
	if err != nil {
		return nil, fmt.Errorf("bridge: connect %s: %w", cfg.Servers, err)
	}
	c.Conn = nc
	if nc.IsConnected() {
		c.signal()
	}
	return c, nil
}

func (c *Conn) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (cfg ConnConfig) options() ([]nats.Option, *Conn, error) {
	if strings.TrimSpace(cfg.Servers) == "" {
		return nil, nil, fmt.Errorf("%w: no NATS server given", ErrConfig)
	}
	if cfg.Name == "" {
		cfg.Name = "telewire"
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = 100 * time.Millisecond
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = 2 * time.Second
	}
	if cfg.ReconnectMax < cfg.ReconnectMin {
		return nil, nil, fmt.Errorf("%w: ReconnectMax %v below ReconnectMin %v", ErrConfig, cfg.ReconnectMax, cfg.ReconnectMin)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 2 * time.Second
	}
	c := &Conn{changed: make(chan struct{}, 1)}
	log := cfg.Logger
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.Timeout(cfg.ConnectTimeout),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		// No client-side buffer while disconnected: a publish then fails at
		// once and stays in the Publisher's own bounded buffer, the only
		// place that holds (and counts) what waits for the server.
		nats.ReconnectBufSize(-1),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			return Backoff(attempts, cfg.ReconnectMin, cfg.ReconnectMax, rand.Float64())
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("nats connected")
			c.signal()
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // Close, not a loss
			}
			c.disconnects.Add(1)
			log.Warn().Err(err).Msg("nats disconnected; reconnecting")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.reconnects.Add(1)
			log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("nats reconnected")
			c.signal()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn().Err(err).Msg("nats error")
		}),
	}
	if cfg.CredsFile != "" {
		if _, err := os.Stat(cfg.CredsFile); err != nil {
			return nil, nil, fmt.Errorf("%w: credentials file: %v", ErrConfig, err)
		}
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	user, pass, err := userPassword(cfg.UserFile)
	if err != nil {
		return nil, nil, err
	}
	if user != "" {
		opts = append(opts, nats.UserInfo(user, pass))
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, nil, fmt.Errorf("%w: a TLS client certificate needs both the certificate and the key", ErrConfig)
	}
	if cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	return opts, c, nil
}

// userPassword reads "user:password" from the first line of path, or,
// with path empty, from EnvUser and EnvPassword.
func userPassword(path string) (user, pass string, err error) {
	if path == "" {
		return os.Getenv(EnvUser), os.Getenv(EnvPassword), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("%w: user file: %v", ErrConfig, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return "", "", fmt.Errorf("%w: user file %s: %v", ErrConfig, path, err)
		}
		return "", "", fmt.Errorf("%w: user file %s is empty", ErrConfig, path)
	}
	user, pass, ok := strings.Cut(strings.TrimRight(sc.Text(), "\r"), ":")
	if !ok || user == "" {
		return "", "", fmt.Errorf("%w: user file %s: the first line is not user:password", ErrConfig, path)
	}
	return user, pass, nil
}

// Backoff returns the wait before reconnection attempt number attempts
// (counted from 0): min doubled per attempt, capped at max, then scaled into
// [½, 1] of itself by u, a uniform random number in [0, 1).
func Backoff(attempts int, min, max time.Duration, u float64) time.Duration {
	d := min
	for i := 0; i < attempts && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d/2 + time.Duration(u*float64(d/2))
}

// jitter returns a uniform random number in [0, 1) for Backoff.
func jitter() float64 { return rand.Float64() }
