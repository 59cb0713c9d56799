// Package web serves a process's telewire statistics over HTTP: a live
// page at / (embedded, self-contained: no external script or font, so it
// works offline), a WebSocket at /ws pushing a JSON [Snapshot] several
// times a second, the same snapshot at /stats, and the Prometheus
// collectors of tools/metrics at /metrics. It is what the telewire
// command's --http flag starts; a program can start one with [Start] and
// add its senders, receivers and relays as it creates them.
//
// Plain HTTP is served on loopback addresses only, unless
// Config.AllowInsecure says otherwise; with a certificate
// (Config.CertFile, Config.KeyFile) the server speaks HTTPS, TLS 1.2 or
// later. Snapshots are built only when a client asks or a WebSocket is
// open, from the sources' Stats: nothing is counted per packet.
package web
