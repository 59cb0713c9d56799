package main

import (
	"context"
	"fmt"
	"io"

	"github.com/telewire/telewire/internal/seal"
)

func runKeygen(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", "FILE",
		`Writes a new random 32-byte pre-shared key to FILE (64 hex digits, mode 0600) for
--key-file. It refuses to overwrite an existing file. Give the same file to both ends:
with a key the ends make an X25519 handshake and every packet is sealed with AES-256-GCM
(see docs/security.md).`, stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError(fs, "keygen takes one FILE")
	}
	path := fs.Arg(0)
	if path == "-" {
		return usageError(fs, "keygen FILE: a key goes to a file of mode 0600, not to stdout")
	}
	if err := seal.GenerateKeyFile(path, nil); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	fmt.Fprintf(stdout, "wrote a new key to %s\n", path)
	return nil
}

// keyFileUsage is the --key-file flag's help, the same on every command.
const keyFileUsage = "encrypt and authenticate every packet with the pre-shared key in `FILE` (32 bytes as 64 hex digits, mode 0600; `telewire keygen FILE` makes one); both ends need the same key"
