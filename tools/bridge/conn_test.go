package bridge

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestUserPassword(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	u, p, err := userPassword(write("ok", "alice:s3:cret\r\nignored\n"))
	if err != nil || u != "alice" || p != "s3:cret" {
		t.Errorf("got %q %q %v", u, p, err)
	}
	for _, bad := range []string{write("empty", ""), write("nocolon", "alice\n"), write("nouser", ":pw\n"), filepath.Join(dir, "missing")} {
		if _, _, err := userPassword(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", filepath.Base(bad), err)
		}
	}
	t.Setenv(EnvUser, "bob")
	t.Setenv(EnvPassword, "pw")
	if u, p, err := userPassword(""); err != nil || u != "bob" || p != "pw" {
		t.Errorf("from the environment: %q %q %v", u, p, err)
	}
}

func TestConnectConfigErrors(t *testing.T) {
	for _, cfg := range []ConnConfig{
		{},
		{Servers: "nats://127.0.0.1:1", CredsFile: filepath.Join(t.TempDir(), "none.creds")},
		{Servers: "nats://127.0.0.1:1", TLSCert: "c.pem"},
		{Servers: "nats://127.0.0.1:1", ReconnectMin: 2, ReconnectMax: 1},
	} {
		if c, err := Connect(cfg); !errors.Is(err, ErrConfig) {
			if c != nil {
				c.Close()
			}
			t.Errorf("%+v: %v, want ErrConfig", cfg, err)
		}
	}
}
