package seal

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
)

// HKDF labels for what is derived from the pre-shared key alone. Changing
// any of them changes every key: they are part of the wire format. (The
// handshake's labels are in handshake.go.)
const (
	labelExtract = "telewire/v1 psk"
	labelKeyID   = "telewire/v1 key id"
	labelMAC     = "telewire/v2 handshake mac"
)

// maxKeyFileSize bounds what LoadKeyFile reads: a key file is one short
// line and perhaps comments.
const maxKeyFileSize = 4096

// Errors about keys and key files. Key file errors come wrapped in a
// [*KeyFileError] that names the file.
var (
	// ErrKeyFormat: the file's contents are not one key in a format
	// LoadKeyFile accepts, or the key is all zeros.
	ErrKeyFormat = errors.New("seal: key is not 32 bytes as 64 hex digits or base64")
	// ErrKeyPermissions: the key file is accessible to others than its
	// owner and group, or writable by its group.
	ErrKeyPermissions = errors.New("seal: key file permissions too open (want 0600 or 0640)")
	// ErrKeyFileType: the key file is not a regular file, or too large.
	ErrKeyFileType = errors.New("seal: key file is not a small regular file")
)

// KeyFileError says which key file could not be used and why. Err is one
// of the sentinels above or the error from the file system.
type KeyFileError struct {
	Path string
	Err  error
}

// Error returns the message, naming the file.
func (e *KeyFileError) Error() string { return fmt.Sprintf("seal: key file %q: %v", e.Path, e.Err) }

// Unwrap returns the underlying error, for errors.Is and errors.As.
func (e *KeyFileError) Unwrap() error { return e.Err }

// Key is a loaded pre-shared key, kept only as its HKDF pseudorandom key,
// which authenticates the handshake and enters every traffic key. A Key is
// immutable and safe for concurrent use.
type Key struct {
	prk []byte
	mac []byte // HMAC key of the handshake messages
	id  uint32
}

// NewKey returns the Key for a 32-byte pre-shared key. It does not keep or
// modify psk. An all-zero key is refused as a configuration mistake.
func NewKey(psk []byte) (*Key, error) {
	if len(psk) != KeyLen {
		return nil, fmt.Errorf("%w: got %d bytes", ErrKeyFormat, len(psk))
	}
	var zero [KeyLen]byte
	if subtle.ConstantTimeCompare(psk, zero[:]) == 1 {
		return nil, fmt.Errorf("%w: all zeros", ErrKeyFormat)
	}
	prk, err := hkdf.Extract(sha256.New, psk, []byte(labelExtract))
	if err != nil {
		return nil, err
	}
	id, err := hkdf.Expand(sha256.New, prk, labelKeyID, 4)
	if err != nil {
		return nil, err
	}
	mac, err := hkdf.Expand(sha256.New, prk, labelMAC, KeyLen)
	if err != nil {
		return nil, err
	}
	return &Key{prk: prk, mac: mac, id: binary.BigEndian.Uint32(id)}, nil
}

// ID returns the key id: 32 bits derived from the key, carried in every
// handshake message so that a peer with another key is told apart from a
// forger. It is not secret and says nothing about the key.
func (k *Key) ID() uint32 { return k.id }

// ParseKey reads a key in key-file format (see [LoadKeyFile]).
func ParseKey(text []byte) (*Key, error) {
	var token []byte
	for line := range bytes.Lines(text) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if token != nil {
			return nil, fmt.Errorf("%w: more than one key line", ErrKeyFormat)
		}
		token = line
	}
	if token == nil {
		return nil, fmt.Errorf("%w: no key line", ErrKeyFormat)
	}
	var psk [KeyLen]byte
	defer clear(psk[:])
	switch len(token) {
	case 2 * KeyLen:
		if _, err := hex.Decode(psk[:], token); err != nil {
			return nil, fmt.Errorf("%w: bad hex", ErrKeyFormat)
		}
	case base64.StdEncoding.EncodedLen(KeyLen), base64.RawStdEncoding.EncodedLen(KeyLen):
		enc := base64.StdEncoding
		if len(token) == base64.RawStdEncoding.EncodedLen(KeyLen) {
			enc = base64.RawStdEncoding
		}
		if n, err := enc.Decode(psk[:], token); err != nil || n != KeyLen {
			return nil, fmt.Errorf("%w: bad base64", ErrKeyFormat)
		}
	default:
		return nil, fmt.Errorf("%w: key line of %d characters", ErrKeyFormat, len(token))
	}
	return NewKey(psk[:])
}

// LoadKeyFile reads a pre-shared key file.
//
// The file holds 32 random bytes on one line, written as 64 hexadecimal
// digits (either case) or as base64 (standard alphabet, 44 characters with
// padding or 43 without). Blank lines, lines starting with '#' and
// surrounding white space are ignored; anything else is an error. Make one
// with [GenerateKeyFile], or with
//
//	(umask 077; openssl rand -hex 32 > telewire.key)
//
// On Unix the file must be a regular file that no one outside its owner and
// group can read or write, and that its group cannot write: mode 0600 or
// 0640 (or stricter). Anything more open is refused with
// ErrKeyPermissions, as ssh refuses an open private key: a key others can
// read is a key others have. The same file must be given to both ends.
//
// Every error is a [*KeyFileError] wrapping ErrKeyFormat,
// ErrKeyPermissions, ErrKeyFileType or the file system's error.
func LoadKeyFile(path string) (*Key, error) {
	fail := func(err error) (*Key, error) { return nil, &KeyFileError{Path: path, Err: err} }
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if err := checkKeyFileInfo(fi); err != nil {
		return fail(err)
	}
	text, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	defer clear(text)
	if err != nil {
		return fail(err)
	}
	if len(text) > maxKeyFileSize {
		return fail(fmt.Errorf("%w: larger than %d bytes", ErrKeyFileType, maxKeyFileSize))
	}
	k, err := ParseKey(text)
	if err != nil {
		return fail(err)
	}
	return k, nil
}

// checkKeyFileInfo applies LoadKeyFile's rules on file type, size and
// permissions.
func checkKeyFileInfo(fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: mode %v", ErrKeyFileType, fi.Mode())
	}
	if fi.Size() > maxKeyFileSize {
		return fmt.Errorf("%w: %d bytes", ErrKeyFileType, fi.Size())
	}
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		return nil // permission bits do not describe access there
	}
	if perm := fi.Mode().Perm(); perm&0o027 != 0 {
		return fmt.Errorf("%w: mode %04o", ErrKeyPermissions, perm)
	}
	return nil
}

// GenerateKeyFile writes a new random key to path in hex, with mode 0600.
// It refuses to overwrite an existing file. random is the source of the
// key's bytes: crypto/rand.Reader in production; nil means that.
func GenerateKeyFile(path string, random io.Reader) error {
	if random == nil {
		random = rand.Reader
	}
	var psk [KeyLen]byte
	defer clear(psk[:])
	if _, err := io.ReadFull(random, psk[:]); err != nil {
		return &KeyFileError{Path: path, Err: err}
	}
	line := make([]byte, 2*KeyLen+1)
	defer clear(line)
	hex.Encode(line, psk[:])
	line[2*KeyLen] = '\n'
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return &KeyFileError{Path: path, Err: err}
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return &KeyFileError{Path: path, Err: err}
	}
	if err := f.Close(); err != nil {
		return &KeyFileError{Path: path, Err: err}
	}
	return nil
}

// ErrKeyChoice is returned by Configured when both a key file and a key
// are given.
var ErrKeyChoice = errors.New("seal: give a key file or a key, not both")

// Configured returns the key a sender or receiver configuration names: the
// key file's when path is set, psk's when it is not nil, and nil (no
// encryption) when neither is.
func Configured(path string, psk []byte) (*Key, error) {
	switch {
	case path != "" && psk != nil:
		return nil, ErrKeyChoice
	case path != "":
		return LoadKeyFile(path)
	case psk != nil:
		return NewKey(psk)
	}
	return nil, nil
}
