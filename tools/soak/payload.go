package soak

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// Layout of a soak message: a header, then filler derived from the index,
// so that a flipped bit anywhere is caught by the checksum and a payload
// delivered under the wrong index is caught by the filler.
const (
	offMagic = 0  // 4 bytes: PayloadMagic
	offFlags = 4  // 4 bytes: flags, big-endian (FlagFence)
	offIndex = 8  // 8 bytes: message index, big-endian, from 0
	offCRC   = 16 // 4 bytes: CRC-32C of every other byte of the message
	// HeaderLen is the smallest soak message: the header without filler.
	HeaderLen = 20
)

// PayloadMagic starts every soak message ("TWS1").
const PayloadMagic = 0x54575331

// FlagFence marks a fence: a message sent after the load, only so that
// ordered delivery can move past losses at the end of it. Fences are not
// load and are left out of the reconciliation's load figures.
const FlagFence = 1

// Errors of CheckPayload, to be tested with errors.Is. They are bare
// sentinels, so that checking a bad payload does not allocate.
var (
	// ErrShortPayload: the message is shorter than HeaderLen.
	ErrShortPayload = errors.New("soak: payload shorter than its header")
	// ErrBadMagic: the message does not start with PayloadMagic.
	ErrBadMagic = errors.New("soak: payload without the soak magic")
	// ErrBadChecksum: the CRC does not match the bytes.
	ErrBadChecksum = errors.New("soak: payload checksum mismatch")
	// ErrBadFiller: the checksum matches but the filler is not the one of
	// the index (a payload stamped with another message's index).
	ErrBadFiller = errors.New("soak: payload filler does not match its index")
	// ErrBadFlags: unknown flag bits are set.
	ErrBadFlags = errors.New("soak: payload with unknown flags")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fillByte is the filler byte at offset off of message index.
func fillByte(index uint64, off int) byte {
	return byte(index) ^ byte(index>>8) ^ byte(off*167)
}

// PutPayload fills msg (at least HeaderLen bytes; shorter is a programming
// error and panics) as soak message index with the given flags. It does
// not allocate.
func PutPayload(msg []byte, index uint64, flags uint32) {
	_ = msg[HeaderLen-1]
	binary.BigEndian.PutUint32(msg[offMagic:], PayloadMagic)
	binary.BigEndian.PutUint32(msg[offFlags:], flags)
	binary.BigEndian.PutUint64(msg[offIndex:], index)
	for i := HeaderLen; i < len(msg); i++ {
		msg[i] = fillByte(index, i)
	}
	binary.BigEndian.PutUint32(msg[offCRC:], checksum(msg))
}

// checksum is the CRC-32C of msg without its CRC field.
func checksum(msg []byte) uint32 {
	c := crc32.Update(0, castagnoli, msg[:offCRC])
	return crc32.Update(c, castagnoli, msg[HeaderLen:])
}

// CheckPayload verifies a message PutPayload wrote and returns its index
// and flags. It never panics and does not allocate.
func CheckPayload(msg []byte) (index uint64, flags uint32, err error) {
	if len(msg) < HeaderLen {
		return 0, 0, ErrShortPayload
	}
	if binary.BigEndian.Uint32(msg[offMagic:]) != PayloadMagic {
		return 0, 0, ErrBadMagic
	}
	if binary.BigEndian.Uint32(msg[offCRC:]) != checksum(msg) {
		return 0, 0, ErrBadChecksum
	}
	flags = binary.BigEndian.Uint32(msg[offFlags:])
	if flags&^FlagFence != 0 {
		return 0, 0, ErrBadFlags
	}
	index = binary.BigEndian.Uint64(msg[offIndex:])
	for i := HeaderLen; i < len(msg); i++ {
		if msg[i] != fillByte(index, i) {
			return 0, 0, ErrBadFiller
		}
	}
	return index, flags, nil
}
