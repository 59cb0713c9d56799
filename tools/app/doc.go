// Package app holds the logic behind the telewire command's send and recv
// subcommands: moving framed messages between standard streams and a
// sender or receiver, pacing, stop conditions, live progress and the final
// statistics. The command itself (tools/telewire) only parses flags into
// the option structs here, so everything the command does can be driven
// from a test in-process.
package app
