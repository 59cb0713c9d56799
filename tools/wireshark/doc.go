// Package wireshark describes telewire's wire format as a Wireshark Lua
// dissector sees it, and generates that dissector, telewire.lua.
//
// The layouts ([Layouts], [Sealed]) are a Go table: every field of the
// common header, of each packet kind's body (REPORT's fields are read from
// [packet.Report] by reflection, in declaration order), the optional
// fields a flag adds at the end of a body, the message map a DATA payload
// begins with when flagged FlagMessages ([Map]: packed messages or a
// fragment's header), and the sealed envelope; for
// each kind also its flags, the directions it travels, and whether seal's
// envelope carries it in clear with a MAC (HELLO, WELCOME, RETRY) or
// encrypted. Tests keep it honest: one parses the byte tables and prose
// of packet/doc.go and internal/seal/doc.go and checks every offset,
// size, optional field and direction against the table (the message
// map's against its two tables in "Messages and datagrams"); one encodes a
// packet of every kind and flag set with [packet.Packet.AppendTo] and
// reads each field back at the table's offset; one compares the sealed
// layout and the handshake messages with package seal and a real
// handshake. Another checks that telewire.lua is exactly what [Lua]
// generates, so the dissector cannot drift from the table either, and
// the tshark tests decode what the encoders, the handshake and a real
// transfer wrote, field by field, and damaged datagrams, which must not
// break the dissector.
//
// After a change to the wire format: update the table here (a new kind is
// one more entry in Layouts, a new optional field one more entry in its
// Optional), run
//
//	go generate ./tools/wireshark
//
// and run the package's tests; the tshark test decodes real traffic with
// the regenerated dissector.
//
// Use it with
//
//	tshark -X lua_script:tools/wireshark/telewire.lua -r capture.pcap
//
// or copy it into Wireshark's personal plugins folder. It registers as a
// heuristic UDP dissector (magic "TW" and a known version) and under
// "Decode As..." for UDP ports.
package wireshark

//go:generate go run ./gen -o telewire.lua
