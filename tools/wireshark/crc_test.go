package wireshark

import "hash/crc32"

// crc32c is packet's checksum: CRC-32C of the header before the CRC
// field, then the body.
func crc32c(head, body []byte) uint32 {
	tab := crc32.MakeTable(crc32.Castagnoli)
	return crc32.Update(crc32.Update(0, tab, head), tab, body)
}
