package wireshark

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// recorder is a UDP relay between one client and a server that records
// every datagram it relays, both ways, with the client's and the server's
// addresses, as a capture on the path would.
type recorder struct {
	ln, up *net.UDPConn
	server netip.AddrPort
	drop   func(b []byte) bool // drops client→server datagrams (after recording)

	mu      sync.Mutex
	frames  []frame
	client  netip.AddrPort
	wg      sync.WaitGroup
	drained [2]chan struct{} // a reader saw the drain marker: client side, server side
}

// drainMarker goes through each of the recorder's sockets after the
// ends have closed; a reader that sees it has read everything before it.
var drainMarker = []byte("recorder: drained")

func startRecorder(t *testing.T, server netip.AddrPort, drop func([]byte) bool) *recorder {
	t.Helper()
	ln, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*net.UDPConn{ln, up} {
		c.SetReadBuffer(8 << 20)
	}
	r := &recorder{ln: ln, up: up, server: server, drop: drop, drained: [2]chan struct{}{make(chan struct{}, 1), make(chan struct{}, 1)}}
	r.wg.Add(2)
	go func() { // client → server
		defer r.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := ln.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if bytes.Equal(buf[:n], drainMarker) {
				r.drained[0] <- struct{}{}
				continue
			}
			b := bytes.Clone(buf[:n])
			r.mu.Lock()
			r.client = from
			r.frames = append(r.frames, frame{from, server, b})
			r.mu.Unlock()
			if !r.drop(b) {
				up.Write(b)
			}
		}
	}()
	go func() { // server → client
		defer r.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, err := up.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ICMP errors while the server is gone
			}
			if bytes.Equal(buf[:n], drainMarker) {
				r.drained[1] <- struct{}{}
				continue
			}
			b := bytes.Clone(buf[:n])
			r.mu.Lock()
			client := r.client
			r.frames = append(r.frames, frame{server, client, b})
			r.mu.Unlock()
			ln.WriteToUDPAddrPort(b, client)
		}
	}()
	return r
}

func (r *recorder) addr() netip.AddrPort { return r.ln.LocalAddr().(*net.UDPAddr).AddrPort() }

// stop, called once both ends have closed, sends a marker through each
// socket (to the server side from the server's now free address, since
// that socket takes datagrams from the server only) and waits until the
// readers have seen them: a socket delivers in order, so everything the
// ends wrote has then been recorded, however late the readers run on a
// loaded machine. It then closes the relay and returns the frames.
func (r *recorder) stop(t *testing.T) []frame {
	t.Helper()
	cl, err := net.DialUDP("udp", nil, r.ln.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	srv, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(r.server))
	if err != nil {
		t.Fatalf("the server's address is not free after the receiver closed: %v", err)
	}
	defer srv.Close()
	for i, send := range []func() error{
		func() error { _, err := cl.Write(drainMarker); return err },
		func() error { _, err := srv.WriteToUDP(drainMarker, r.up.LocalAddr().(*net.UDPAddr)); return err },
	} {
		if err := send(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-r.drained[i]:
		case <-time.After(30 * time.Second):
			t.Fatalf("recorder: socket %d not drained after 30 s", i)
		}
	}
	r.ln.Close()
	r.up.Close()
	r.wg.Wait()
	return r.frames
}

// TestTsharkRealTraffic records a real transfer (a sender and a receiver
// over loopback, with FEC and some datagrams dropped so that NACKs and
// retransmissions happen), without and with a key, and decodes the
// capture with tshark: every frame's every field must be what the code's
// decoders read, no valid frame may carry expert info, and the datagrams
// of each kind must add up to what the sender and receiver counted. With
// a key the capture starts with the handshake (HELLO, WELCOME, CONFIRM),
// and two thirds of the way the receiver is replaced by a new one on the
// same address: the sender's next packets draw a RETRY, and a second
// handshake follows. A burst of messages goes out packed, and one message
// larger than a datagram in fragments: without a key the dissector
// decodes both maps (checked against packet's readers with every other
// field), and the fragments it shows tile the message.
func TestTsharkRealTraffic(t *testing.T) {
	const bigLen = 20000 // more than any datagram carries
	tshark(t)
	for _, keyed := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "sealed"}[keyed], func(t *testing.T) {
			var psk []byte
			var key *seal.Key
			if keyed {
				psk = bytes.Repeat([]byte{0x5a}, seal.KeyLen)
				var err error
				if key, err = seal.NewKey(psk); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := receiver.Config{Listen: "127.0.0.1:0", Key: psk, ReportInterval: 20 * time.Millisecond}
			rcv, err := receiver.Listen(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			server := rcv.Addr()
			cfg.Listen = server.String()
			var delivered atomic.Int64
			consume := func(r *receiver.Receiver) chan struct{} {
				done := make(chan struct{})
				go func() {
					defer close(done)
					for {
						if _, err := r.Recv(ctx); err != nil {
							return
						}
						delivered.Add(1)
					}
				}()
				return done
			}
			rcvs := []*receiver.Receiver{rcv}
			dones := []chan struct{}{consume(rcv)}
			// Drop every 37th datagram towards the receiver, and a burst of
			// 40 in the middle: FEC repairs some, NACKs the rest, and the
			// small retransmit buffer answers some NACKs "unavailable".
			n := 0
			rec := startRecorder(t, server, func(b []byte) bool {
				n++
				return n%37 == 0 || (n > 800 && n <= 840)
			})
			snd, err := sender.New(ctx, sender.Config{
				To: rec.addr().String(), Stream: 7, Key: psk, DisableCongestionControl: true,
				FEC: sender.FECConfig{Mode: sender.FECFixed, K: 8, M: 2}, RetransmitPackets: 16,
			})
			if err != nil {
				t.Fatal(err)
			}
			const messages = 1500
			const burstAt, burst, bigAt = 300, 300, 600
			big := bytes.Repeat([]byte("0123456789abcdef"), bigLen/16)
			for i := range messages {
				if keyed && i == messages*2/3 {
					// Replace the receiver: it loses the traffic keys.
					time.Sleep(50 * time.Millisecond)
					rcv.Close()
					<-dones[0]
					if rcv, err = receiver.Listen(ctx, cfg); err != nil {
						t.Fatal(err)
					}
					rcvs = append(rcvs, rcv)
					dones = append(dones, consume(rcv))
				}
				if err := snd.Send([]byte("tick " + strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
				switch i {
				case burstAt:
					// A burst, sent faster than the writer drains it: the
					// sender packs the queued messages into shared DATA.
					for j := range burst {
						if err := snd.Send([]byte("burst " + strconv.Itoa(j))); err != nil {
							t.Fatal(err)
						}
					}
				case bigAt:
					// A message larger than a datagram: fragments.
					if err := snd.Send(big); err != nil {
						t.Fatal(err)
					}
				}
				if i%20 == 19 {
					time.Sleep(2 * time.Millisecond)
				}
			}
			time.Sleep(500 * time.Millisecond) // repairs, reports and idle heartbeats
			session := snd.Session()
			if err := snd.Close(); err != nil {
				t.Fatal(err)
			}
			ss := snd.Stats()
			time.Sleep(50 * time.Millisecond)
			rcv.Close()
			cancel()
			for _, d := range dones {
				<-d
			}
			var rs receiver.Stats
			for i, r := range rcvs {
				x := r.Stats()
				rs.NACKs += x.NACKs
				rs.Reports += x.Reports
				rs.Malformed += x.Malformed
				rs.AuthFailed += x.AuthFailed
				rs.Retries += x.Retries
				rs.Welcomes += x.Welcomes
				rs.HelloRepeats += x.HelloRepeats
				rs.Handshakes += x.Handshakes
				rs.WriteErrors += x.WriteErrors
				t.Logf("receiver %d: %d REPORT, %d NACK, %d RETRY, %d write errors", i+1, x.Reports, x.NACKs, x.Retries, x.WriteErrors)
			}
			frames := rec.stop(t)
			t.Logf("delivered %d of %d; sender %d DATA + %d retransmitted + %d resent, %d PARITY, %d HEARTBEAT + %d answers, %d unavailable, %d HELLO, %d handshakes (%d after a RETRY); receivers %d NACK, %d REPORT, %d WELCOME, %d RETRY",
				delivered.Load(), messages+burst+1, ss.Packets, ss.Retransmits, ss.Resent, ss.Parity, ss.Heartbeats, ss.Answers, ss.Unavailable,
				ss.HandshakeAttempts, ss.Handshakes, ss.Rehandshakes, rs.NACKs, rs.Reports, rs.Welcomes, rs.Retries)

			pcap := writePcap(t, t.TempDir(), frames)
			if dir := os.Getenv("TELEWIRE_TRAFFIC_PCAP_DIR"); dir != "" { // keep the capture, e.g. for the docs' sample output
				if b, err := os.ReadFile(pcap); err == nil {
					_ = os.WriteFile(filepath.Join(dir, t.Name()[len("TestTsharkRealTraffic/"):]+".pcap"), b, 0o644)
				}
			}
			decodedFrames := runTshark(t, pcap)
			if len(decodedFrames) != len(frames) {
				t.Fatalf("tshark decoded %d frames, recorded %d", len(decodedFrames), len(frames))
			}
			count := map[string]int{} // "from kind" -> datagrams; optional field abbrev -> datagrams with it
			type nonce struct {
				tag     uint32
				dir     uint8
				counter uint64
			}
			nonces := map[nonce]bool{}
			tags := map[uint32]bool{}
			reportsByTag := map[uint32]int{}
			var retries []nonce
			pieces := map[int]int{} // the big message's fragments seen: offset -> piece length
			for i, fr := range frames {
				var w want
				if keyed {
					w = envelopeWant(t, key, nil, fr.b)
					if !layoutOf(t, fr.b[3]).MAC {
						in, _ := seal.Peek(fr.b)
						k := nonce{in.KeyID, uint8(in.Dir), in.Counter}
						if nonces[k] {
							t.Errorf("frame %d: key tag %#x direction %d counter %d used twice", i+1, k.tag, k.dir, k.counter)
						}
						nonces[k] = true
						tags[in.KeyID] = true
						if in.Kind == packet.KindReport {
							reportsByTag[in.KeyID]++
						}
					} else if packet.Kind(fr.b[3]) == packet.KindRetry {
						retries = append(retries, nonce{binary.BigEndian.Uint32(fr.b[24:]), uint8(seal.ToReceiver), binary.BigEndian.Uint64(fr.b[32:])})
					}
				} else {
					w = plainWant(t, fr.b)
				}
				check(t, i, decodedFrames[i], w)
				if got := decodedFrames[i].fields["telewire.session"]; len(got) != 1 || got[0] != strconv.FormatUint(session, 10) {
					t.Errorf("frame %d: session %v, the sender's is %d", i+1, got, session)
				}
				from := "receiver"
				if fr.dst == server {
					from = "sender"
				}
				count[from+" "+packet.Kind(fr.b[3]).String()]++
				for _, f := range layoutOf(t, fr.b[3]).Optional {
					if len(decodedFrames[i].fields["telewire."+f.Abbrev]) > 0 {
						count[f.Abbrev]++
					}
				}
				// Message maps (plain only: sealed payloads are encrypted).
				df := decodedFrames[i].fields
				if c := df["telewire."+Map.Messages.Fields[0].Abbrev]; len(c) == 1 && c[0] != "1" {
					count["packed DATA"]++
				}
				if l := df["telewire."+Map.Fragment.Fields[0].Abbrev]; len(l) == 1 && l[0] == strconv.Itoa(bigLen) {
					count["DATA fragment"]++
					off, _ := strconv.Atoi(df["telewire."+Map.Fragment.Fields[1].Abbrev][0])
					n, _ := strconv.Atoi(df["telewire."+Map.PieceLen.Abbrev][0])
					pieces[off] = n
				}
			}
			wantCounts := map[string]uint64{
				"sender DATA":      ss.Packets + ss.Retransmits + ss.Resent,
				"sender PARITY":    ss.Parity,
				"sender HEARTBEAT": ss.Heartbeats + ss.Answers,
				"sender NACK":      ss.Unavailable,
				"receiver NACK":    rs.NACKs,
				"receiver REPORT":  rs.Reports,
			}
			exercised := []string{"sender DATA", "sender PARITY", "sender HEARTBEAT", "receiver NACK", "receiver REPORT"}
			if !keyed {
				// Without a key the receiver proves receipt in its NACKs and
				// challenges the sender in its REPORTs, which answers.
				wantCounts["heartbeat.answer"] = ss.Answers
				exercised = append(exercised, "nack.proof_seq", "report.challenge", "heartbeat.answer", "packed DATA", "DATA fragment")
				// The big message's pieces, as tshark decoded them, tile it.
				for off := 0; off < bigLen; {
					n, ok := pieces[off]
					if !ok {
						t.Errorf("no fragment of the %d-byte message at offset %d in the capture (have %v)", bigLen, off, pieces)
						break
					}
					off += n
				}
			}
			if keyed {
				wantCounts["sender HELLO"] = ss.HandshakeAttempts
				wantCounts["receiver RETRY"] = rs.Retries
				exercised = append(exercised, "sender HELLO", "receiver WELCOME", "sender CONFIRM", "receiver RETRY")
				if w := uint64(count["receiver WELCOME"]); w < rs.Welcomes || w > rs.Welcomes+rs.HelloRepeats {
					t.Errorf("%d WELCOMEs in the capture, the receivers answered %d HELLOs anew and %d repeats", w, rs.Welcomes, rs.HelloRepeats)
				}
				if c := uint64(count["sender CONFIRM"]); c < ss.Handshakes || c > 2*ss.Handshakes {
					t.Errorf("%d CONFIRMs in the capture for %d handshakes", c, ss.Handshakes)
				}
				if len(tags) != int(ss.Handshakes) || ss.Handshakes != 2 || ss.Rehandshakes != 1 {
					t.Errorf("%d key tags in the capture; the sender completed %d handshakes, %d after a RETRY; want 2 and 1", len(tags), ss.Handshakes, ss.Rehandshakes)
				}
				for _, r := range retries {
					if !nonces[r] {
						t.Errorf("RETRY names key tag %#x counter %d, which no sealed packet in the capture carries", r.tag, r.counter)
					}
				}
			}
			for what, want := range wantCounts {
				if uint64(count[what]) != want {
					t.Errorf("%s: %d datagrams in the capture, the ends counted %d (REPORTs by key tag %v)", what, count[what], want, reportsByTag)
				}
			}
			for _, kind := range exercised {
				if count[kind] == 0 {
					t.Errorf("no %s in the capture: the test did not exercise every kind", kind)
				}
			}
			if rs.Malformed+rs.AuthFailed+ss.Malformed+ss.AuthFailed != 0 {
				t.Errorf("the ends rejected datagrams: receiver %d/%d, sender %d/%d", rs.Malformed, rs.AuthFailed, ss.Malformed, ss.AuthFailed)
			}
		})
	}
}
