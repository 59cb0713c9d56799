// Package wireshark describes telewire's wire format as a Wireshark Lua
// dissector sees it, and generates that dissector, telewire.lua.
//
// The layouts ([Layouts], [Sealed]) are a Go table: every field of the
// common header, of each packet kind's body (REPORT's fields are read from
// [packet.Report] by reflection, in declaration order), and of the sealed
// envelope. Two tests keep it honest: one parses the byte tables in
// packet/doc.go and internal/seal/doc.go and checks every offset and size
// against the table, and one encodes a packet of every kind with
// [packet.Packet.AppendTo] and reads each field back at the table's
// offset. A third checks that telewire.lua is exactly what [Lua]
// generates, so the dissector cannot drift from the table either.
//
// After a change to the wire format: update the table here (a new kind is
// one more entry in Layouts), run
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
