package bridge_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/telewire/telewire/tools/bridge"
	"github.com/telewire/telewire/tools/bridge/natstest"
)

// TestConnectUserPassword: a server that requires a user and password
// accepts the bridge with them from a file or the environment, and a wrong
// password never connects.
func TestConnectUserPassword(t *testing.T) {
	srv := natstest.StartWith(t, -1, t.TempDir(), func(o *server.Options) {
		o.Username, o.Password = "bridge", "s3cret"
	})
	file := filepath.Join(t.TempDir(), "user")
	if err := os.WriteFile(file, []byte("bridge:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := bridge.Connect(bridge.ConnConfig{Servers: srv.URL, UserFile: file})
	if err != nil {
		t.Fatal(err)
	}
	waitConnected(t, c)
	c.Close()

	t.Setenv(bridge.EnvUser, "bridge")
	t.Setenv(bridge.EnvPassword, "s3cret")
	c, err = bridge.Connect(bridge.ConnConfig{Servers: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	waitConnected(t, c)
	c.Close()

	t.Setenv(bridge.EnvPassword, "wrong")
	c, err = bridge.Connect(bridge.ConnConfig{Servers: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(300 * time.Millisecond) // a few attempts
	if c.IsConnected() {
		t.Error("connected with a wrong password")
	}
}

// TestConnectTLS: a server that requires TLS and verifies client
// certificates accepts the bridge with the CA, certificate and key files.
func TestConnectTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, nil, nil, "test CA", true)
	srvCert, srvKey := newCert(t, ca, caKey, "127.0.0.1", false)
	cliCert, cliKey := newCert(t, ca, caKey, "bridge", false)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	writePEM(t, filepath.Join(dir, "client.pem"), "CERTIFICATE", cliCert.Raw)
	writeKey(t, filepath.Join(dir, "client-key.pem"), cliKey)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	srv := natstest.StartWith(t, -1, t.TempDir(), func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSTimeout = true, true, 5
		o.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey}},
			ClientCAs:    pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		}
	})
	c, err := bridge.Connect(bridge.ConnConfig{
		Servers: srv.URL, TLSCA: filepath.Join(dir, "ca.pem"),
		TLSCert: filepath.Join(dir, "client.pem"), TLSKey: filepath.Join(dir, "client-key.pem"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitConnected(t, c)
	if _, err := c.TLSConnectionState(); err != nil {
		t.Errorf("not TLS: %v", err)
	}
	// Without the client certificate the server refuses.
	c2, err := bridge.Connect(bridge.ConnConfig{Servers: srv.URL, TLSCA: filepath.Join(dir, "ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	time.Sleep(300 * time.Millisecond)
	if c2.IsConnected() {
		t.Error("connected without a client certificate")
	}
}

func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, name string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:        isCA, BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t *testing.T, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "EC PRIVATE KEY", der)
}
