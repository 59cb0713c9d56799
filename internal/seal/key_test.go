package seal

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

var testPSK = bytes.Repeat([]byte{0xc3, 0x3c, 0x5a, 0xa5}, 8)

func TestParseKeyFormats(t *testing.T) {
	want, err := NewKey(testPSK)
	if err != nil {
		t.Fatal(err)
	}
	hx := hex.EncodeToString(testPSK)
	good := []string{
		hx,
		hx + "\n",
		strings.ToUpper(hx) + "\r\n",
		"# telewire key, made 2025-01-01\n\n  " + hx + "  \n# end\n",
		base64.StdEncoding.EncodeToString(testPSK) + "\n",
		base64.RawStdEncoding.EncodeToString(testPSK),
	}
	for _, s := range good {
		k, err := ParseKey([]byte(s))
		if err != nil {
			t.Errorf("ParseKey(%q): %v", s, err)
			continue
		}
		if k.ID() != want.ID() || !bytes.Equal(k.prk, want.prk) {
			t.Errorf("ParseKey(%q) gave another key", s)
		}
	}
	bad := []string{
		"",
		"# only a comment\n",
		hx[:62],
		hx + "00",
		"zz" + hx[2:],
		hx + "\n" + hx + "\n",
		hx[:32] + " " + hx[32:],
		base64.StdEncoding.EncodeToString(testPSK)[:43] + "!",
		strings.Repeat("0", 64),
		base64.StdEncoding.EncodeToString(make([]byte, 31)),
	}
	for _, s := range bad {
		if _, err := ParseKey([]byte(s)); !errors.Is(err, ErrKeyFormat) {
			t.Errorf("ParseKey(%q): %v, want ErrKeyFormat", s, err)
		}
	}
	if _, err := NewKey(testPSK[:31]); !errors.Is(err, ErrKeyFormat) {
		t.Errorf("NewKey of 31 bytes: %v", err)
	}
}

func TestNewKeyDoesNotKeepPSK(t *testing.T) {
	psk := append([]byte(nil), testPSK...)
	k, err := NewKey(psk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(psk, testPSK) {
		t.Fatal("NewKey modified its argument")
	}
	if bytes.Contains(k.prk, testPSK[:8]) {
		t.Fatal("the key keeps the PSK")
	}
}

func writeFile(t *testing.T, name, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // not subject to the umask
		t.Fatal(err)
	}
	return p
}

func TestLoadKeyFile(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("permission bits are not checked here")
	}
	want, _ := NewKey(testPSK)
	line := hex.EncodeToString(testPSK) + "\n"
	for _, mode := range []os.FileMode{0o600, 0o400, 0o640, 0o440} {
		k, err := LoadKeyFile(writeFile(t, "k", line, mode))
		if err != nil || k.ID() != want.ID() {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o644, 0o604, 0o660, 0o620, 0o602, 0o666, 0o601} {
		p := writeFile(t, "k", line, mode)
		_, err := LoadKeyFile(p)
		var kfe *KeyFileError
		if !errors.Is(err, ErrKeyPermissions) || !errors.As(err, &kfe) || kfe.Path != p {
			t.Errorf("mode %04o: %v, want ErrKeyPermissions naming the file", mode, err)
		}
		if err != nil && !strings.Contains(err.Error(), p) {
			t.Errorf("message %q does not name the file", err)
		}
	}
	if _, err := LoadKeyFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := LoadKeyFile(t.TempDir()); !errors.Is(err, ErrKeyFileType) {
		t.Errorf("directory: %v", err)
	}
	big := writeFile(t, "big", "#"+strings.Repeat("x", maxKeyFileSize)+"\n"+line, 0o600)
	if _, err := LoadKeyFile(big); !errors.Is(err, ErrKeyFileType) {
		t.Errorf("oversized file: %v", err)
	}
	if _, err := LoadKeyFile(writeFile(t, "k", "not a key\n", 0o600)); !errors.Is(err, ErrKeyFormat) {
		t.Errorf("bad contents: %v", err)
	}
}

func TestGenerateKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "telewire.key")
	if err := GenerateKeyFile(p, bytes.NewReader(testPSK)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o", fi.Mode().Perm())
	}
	k, err := LoadKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := NewKey(testPSK)
	if k.ID() != want.ID() {
		t.Fatal("generated file holds another key")
	}
	if err := GenerateKeyFile(p, nil); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: %v", err)
	}
	if err := GenerateKeyFile(filepath.Join(dir, "short"), bytes.NewReader(testPSK[:5])); err == nil {
		t.Fatal("short random source accepted")
	}
	// With the real source, two files hold different keys.
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if GenerateKeyFile(a, nil) != nil || GenerateKeyFile(b, nil) != nil {
		t.Fatal("GenerateKeyFile with crypto/rand failed")
	}
	ka, _ := LoadKeyFile(a)
	kb, _ := LoadKeyFile(b)
	if ka == nil || kb == nil || bytes.Equal(ka.prk, kb.prk) {
		t.Fatal("two generated keys are equal")
	}
}

func TestConfigured(t *testing.T) {
	psk := bytes.Repeat([]byte{7}, KeyLen)
	if k, err := Configured("", nil); k != nil || err != nil {
		t.Fatalf("no key: %v, %v", k, err)
	}
	if _, err := Configured("x", psk); !errors.Is(err, ErrKeyChoice) {
		t.Fatalf("both: %v", err)
	}
	k, err := Configured("", psk)
	if err != nil || k == nil {
		t.Fatalf("raw key: %v", err)
	}
	path := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(path, []byte(strings.Repeat("07", KeyLen)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fk, err := Configured(path, nil)
	if err != nil {
		t.Fatalf("key file: %v", err)
	}
	if fk.ID() != k.ID() {
		t.Fatal("the same key from a file and from bytes has different ids")
	}
	if _, err := Configured("", psk[:5]); !errors.Is(err, ErrKeyFormat) {
		t.Fatalf("short key: %v", err)
	}
}
