package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/capture"
	"github.com/telewire/telewire/tools/replay"
)

// TestConfirmed: what one stream's receiver view confirms and shows lost.
func TestConfirmed(t *testing.T) {
	cases := []struct {
		v              sender.ReceiverView
		sent, ok, lost uint64
	}{
		{sender.ReceiverView{}, 10, 0, 0}, // never reported: all unconfirmed
		{sender.ReceiverView{Reported: true, Received: 10}, 10, 10, 0},
		{sender.ReceiverView{Reported: true, Received: 12}, 10, 10, 0}, // a report from a later pass
		{sender.ReceiverView{Reported: true, Received: 7}, 10, 7, 0},   // the tail not yet reported
		{sender.ReceiverView{Reported: true, Received: 7, Unrecovered: 2}, 10, 7, 2},
		{sender.ReceiverView{Reported: true, Received: 10, Late: 1}, 10, 9, 1},                // arrived after its deadline
		{sender.ReceiverView{Reported: true, Received: 8, Unrecovered: 5, Late: 1}, 10, 7, 3}, // lost never above the missing
		{sender.ReceiverView{Reported: true, Received: 1, Late: 4}, 10, 0, 4},                 // Late above Received: no underflow
	}
	for _, c := range cases {
		ok, lost := confirmed(c.v, c.sent)
		if ok != c.ok || lost != c.lost {
			t.Errorf("%+v of %d: confirmed %d lost %d, want %d and %d", c.v, c.sent, ok, lost, c.ok, c.lost)
		}
	}
}

// TestJudge: the delivery of a replay from its senders' statistics, per
// flow and in all, with a session the receiver never reported on and a
// stream it refused in a session it did report on.
func TestJudge(t *testing.T) {
	flows := make([]Flow, 5) // per = 2: sessions {0,1} {2,3} {4}
	rep := func(received, unrecovered uint64) sender.ReceiverView {
		return sender.ReceiverView{Reported: true, Received: received, Unrecovered: unrecovered}
	}
	senders := []sender.Stats{
		{Reports: 9, Streams: []sender.StreamStats{{Stream: 0, Sent: 4, Receiver: rep(4, 0)}, {Stream: 1, Sent: 3, Receiver: rep(1, 1)}}},
		{Reports: 0, Streams: []sender.StreamStats{{Stream: 0, Sent: 2}, {Stream: 1, Sent: 5}}},
		{Reports: 1, Streams: []sender.StreamStats{{Stream: 0, Sent: 6, Receiver: rep(6, 0)}}},
	}
	d := judge(flows, senders, 2)
	want := Delivery{Sent: 20, Confirmed: 11, Lost: 1, Unconfirmed: 8, FlowsIncomplete: 3, SessionsUnreported: 1, Reports: 10}
	if d != want {
		t.Fatalf("delivery %+v\nwant     %+v", d, want)
	}
	if f := flows[1]; f.Lost != 1 || f.Unconfirmed != 1 {
		t.Fatalf("flow 1: %+v", f)
	}
	if f := flows[3]; f.Lost != 0 || f.Unconfirmed != 5 {
		t.Fatalf("flow 3: %+v", f)
	}
	// A stream never reported on in a session that was.
	senders[2].Streams = append(senders[2].Streams, sender.StreamStats{Stream: 1, Sent: 1})
	if d := judge(make([]Flow, 6), senders, 2); d.StreamsUnreported != 1 || d.SessionsUnreported != 1 {
		t.Fatalf("delivery %+v", d)
	}

	st := &ReplayStats{Delivery: want, Flows: flows, To: "127.0.0.1:9", Senders: senders}
	err := verdict(st)
	var ie *IncompleteError
	if !errors.As(err, &ie) || !errors.Is(err, ErrIncomplete) || ie.ExitCode() != ExitIncomplete || ie.Lost != 1 || ie.Unconfirmed != 8 {
		t.Fatalf("verdict %v", err)
	}
	txt := deliveryText(st)
	for _, s := range []string{"confirmed 11 of 20", "1 lost", "8 unconfirmed", "never reported on 1 of 3 sender sessions", "3 flows incomplete"} {
		if !strings.Contains(txt, s) {
			t.Errorf("delivery text lacks %q:\n%s", s, txt)
		}
	}
	if n := strings.Count(txt, "\n    sender "); n != 3 {
		t.Errorf("%d incomplete flows listed, want 3:\n%s", n, txt)
	}

	st.Delivery = Delivery{Sent: 20, Unconfirmed: 20}
	if err := verdict(st); !errors.As(err, &ie) || ie.ExitCode() != ExitNoFeedback || !strings.Contains(deliveryText(st), "no report from the receiver") {
		t.Fatalf("no feedback: %v", err)
	}
	st.Delivery = Delivery{Sent: 20, Confirmed: 20, Reports: 4}
	if err := verdict(st); err != nil || !strings.Contains(deliveryText(st), "every flow whole") {
		t.Fatalf("whole: %v", err)
	}
	st.SkippedTooLarge = 1
	if err := verdict(st); !errors.As(err, &ie) || ie.NotSent != 1 || ie.ExitCode() != ExitIncomplete {
		t.Fatalf("not sent: %v", err)
	}
}

// TestSessionConfig: each session's retransmit memory and queue follow
// what its flows send, within their bounds, and settings given explicitly
// are kept.
func TestSessionConfig(t *testing.T) {
	o := ReplayOptions{To: "127.0.0.1:9"}
	small := []Flow{{Packets: 3, Bytes: 900}, {Packets: 1, Bytes: 10}}
	cfg := sessionConfig(o, small, 1, minStreamRetransmit)
	if cfg.MaxStreams != 2 || cfg.RetransmitBytes != minRetransmitFloor || cfg.RetransmitPackets != minRetransmitPackets || cfg.QueueBytes != minQueueBytes {
		t.Fatalf("small flows: %+v", cfg)
	}
	big := []Flow{{Packets: 100_000, Bytes: 100 << 20}}
	cfg = sessionConfig(o, big, 2, maxStreamRetransmit)
	if cfg.RetransmitBytes != maxStreamRetransmit || cfg.RetransmitPackets != defaultRetransmitPackets || cfg.QueueBytes != defaultQueueBytes {
		t.Fatalf("big flow: %+v", cfg)
	}
	mid := []Flow{{Packets: 500, Bytes: 500 << 10}}
	cfg = sessionConfig(o, mid, 1, 1<<20)
	wire := 500<<10 + 500*(packet.HeaderLen+packet.DataHeaderLen+32)
	if cfg.RetransmitBytes != min(1<<20, wire) || cfg.RetransmitPackets != 500 {
		t.Fatalf("mid flow: %+v", cfg)
	}
	o.Sender.RetransmitBytes, o.Sender.RetransmitPackets, o.Sender.QueueBytes = 1<<20, 4096, 1<<21
	if cfg = sessionConfig(o, small, 1, minStreamRetransmit); cfg.RetransmitBytes != 1<<20 || cfg.RetransmitPackets != 4096 || cfg.QueueBytes != 1<<21 {
		t.Fatalf("explicit settings: %+v", cfg)
	}
	if _, err := sender.NewCore(sessionConfig(ReplayOptions{To: "127.0.0.1:9"}, small, 1, minStreamRetransmit), 1, netip.MustParseAddrPort("127.0.0.1:9")); err != nil {
		t.Fatalf("the smallest sizes are a valid sender config: %v", err)
	}
	if satMul(1<<40, 1<<40) != ^uint64(0) || satAdd(^uint64(0), 1) != ^uint64(0) {
		t.Fatal("saturating arithmetic")
	}
}

// TestRetainedPasses: the passes a retransmit buffer is sized for.
func TestRetainedPasses(t *testing.T) {
	sec := int64(time.Second)
	for _, c := range []struct {
		loops int
		pass  int64
		age   time.Duration
		want  uint64
	}{
		{0, 0, 0, 1},
		{3, 0, 0, 3},
		{replay.Forever, 0, 0, 1<<32 - 1}, // top speed without end: the sender's bounds cap it
		{replay.Forever, 10 * sec, 0, 1},  // a 10 s pass: 2 s of it at most
		{replay.Forever, sec / 10, 0, 21}, // 100 ms passes: 2 s is 20 of them, and one more
		{5, sec / 10, 0, 5},
		{replay.Forever, sec / 10, 2 * time.Second, 41},
	} {
		o := ReplayOptions{Timing: replay.Config{Loops: c.loops}, Sender: sender.Config{RetransmitMaxAge: c.age}}
		if got := retainedPasses(o, c.pass); got != c.want {
			t.Errorf("loops %d, pass %v, max age %v: %d passes, want %d", c.loops, time.Duration(c.pass), c.age, got, c.want)
		}
	}
}

// TestSessionsNumbering: the scan numbers flows in order of first
// appearance into sessions of SessionStreams streams.
func TestSessionsNumbering(t *testing.T) {
	dgs := genDatagrams(12, 8, 10, time.Millisecond)
	path := writePcap(t, t.TempDir(), capture.WriterOptions{}, dgs)
	sc, err := scanCapture(ReplayOptions{File: path, SessionStreams: 3, Timing: replay.Config{TopSpeed: true}})
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, f := range sc.table.flows {
		got = append(got, f.Sender, int(f.Stream))
	}
	if want := []int{0, 0, 0, 1, 0, 2, 1, 0}; !equalInts(got, want) {
		t.Fatalf("(sender, stream) of the flows %v, want %v", got, want)
	}
	if n := sessionCount(len(sc.table.flows), 3); n != 2 {
		t.Fatalf("%d sessions", n)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPcapSinkSessions: with several sessions in the mapping, a message
// takes the flow of its session and stream; the same stream of another
// session is another flow; a mapping entry without a session names its
// stream in any session.
func TestPcapSinkSessions(t *testing.T) {
	dir := t.TempDir()
	flowsPath := filepath.Join(dir, "flows.json")
	ap := netip.MustParseAddrPort
	doc, _ := json.Marshal(flowsDoc{Flows: []Flow{
		{Sender: 0, Session: "00000000000000aa", Stream: 0, Src: ap("10.0.0.1:1"), Dst: ap("10.0.0.2:2")},
		{Sender: 1, Session: "00000000000000bb", Stream: 0, Src: ap("10.0.0.3:3"), Dst: ap("10.0.0.4:4")},
		{Stream: 7, Src: ap("[fd00::1]:7"), Dst: ap("[fd00::2]:7")},
	}})
	if err := os.WriteFile(flowsPath, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	sink, err := openPcapSink(filepath.Join(dir, "out.pcap"), flowsPath, ap("127.0.0.1:9000"), func(n int64) time.Time { return time.Unix(0, n) })
	if err != nil {
		t.Fatal(err)
	}
	defer sink.close()
	from := ap("127.0.0.1:45000")
	if err := sink.write(&receiver.Message{Source: from, Session: 0xaa}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		session uint64
		stream  uint32
		src     string
		ok      bool
	}{
		{0xaa, 0, "10.0.0.1:1", true},
		{0xbb, 0, "10.0.0.3:3", true},
		{0xcc, 0, "", false},
		{0xcc, 7, "[fd00::1]:7", true},
		{0xaa, 7, "[fd00::1]:7", true},
		{0xaa, 1, "", false},
	} {
		f, ok := sink.lookup(&receiver.Message{Session: c.session, Stream: c.stream})
		if ok != c.ok || (ok && f.Src.String() != c.src) {
			t.Errorf("session %x stream %d: %+v %v, want %s %v", c.session, c.stream, f, ok, c.src, c.ok)
		}
	}
}

// TestPcapSinkReload: a second replay into the same receiver writes a new
// mapping file; the sink reads it when a message of an unknown session
// arrives (at most every flowsRetryNanos) and keeps the first replay's
// flows too.
func TestPcapSinkReload(t *testing.T) {
	dir := t.TempDir()
	flowsPath := filepath.Join(dir, "flows.json")
	ap := netip.MustParseAddrPort
	first := flowsDoc{Flows: []Flow{{Session: "aa", Stream: 0, Src: ap("10.0.0.1:1"), Dst: ap("10.0.0.2:2")}}}
	second := flowsDoc{Flows: []Flow{{Session: "bb", Stream: 0, Src: ap("10.0.0.3:3"), Dst: ap("10.0.0.4:4")}}}
	if err := writeJSON(flowsPath, first); err != nil {
		t.Fatal(err)
	}
	sink, err := openPcapSink(filepath.Join(dir, "out.pcap"), flowsPath, ap("127.0.0.1:9000"), func(n int64) time.Time { return time.Unix(0, n) })
	if err != nil {
		t.Fatal(err)
	}
	defer sink.close()
	write := func(session uint64, at int64) {
		t.Helper()
		if err := sink.write(&receiver.Message{Source: ap("127.0.0.1:5"), Session: session, ReceiveNanos: at, Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	write(0xaa, 0)
	if err := writeJSON(flowsPath, second); err != nil {
		t.Fatal(err)
	}
	write(0xbb, 1)               // too soon to look again: fallback
	write(0xbb, flowsRetryNanos) // reads the new file
	write(0xaa, flowsRetryNanos+1)
	if sink.written != 4 || sink.mapped != 3 {
		t.Fatalf("written %d, mapped %d; want 4 and 3", sink.written, sink.mapped)
	}
	if _, ok := sink.lookup(&receiver.Message{Session: 0xaa}); !ok {
		t.Fatal("the first replay's flows were forgotten")
	}
}

// TestSessionsSendAllocs: sending a datagram on a flow's stream through
// the sessions allocates nothing once the streams exist.
func TestSessionsSendAllocs(t *testing.T) {
	flows := make([]Flow, 5)
	for i := range flows {
		flows[i].Packets, flows[i].Bytes = 1000, 100_000
	}
	o := ReplayOptions{To: "127.0.0.1:9", SessionStreams: 2, Sender: sender.Config{DisableCongestionControl: true}}
	ss, err := startSessions(context.Background(), o, flows, newWallClock(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.close()
	if len(ss.senders) != 3 || flows[4].Session == "" || flows[4].Session == flows[0].Session {
		t.Fatalf("%d senders; sessions %q %q", len(ss.senders), flows[0].Session, flows[4].Session)
	}
	payload := make([]byte, 100)
	for i := range uint32(5) {
		if err := ss.send(i, payload); err != nil { // creates the streams
			t.Fatal(err)
		}
	}
	i := uint32(0)
	allocs := testing.AllocsPerRun(500, func() {
		if err := ss.send(i%5, payload); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs != 0 {
		t.Fatalf("send allocates %v times", allocs)
	}
	for k, st := range ss.stats() {
		if want := []int{2, 2, 1}[k]; len(st.Streams) != want {
			t.Fatalf("sender %d has %d streams, want %d", k, len(st.Streams), want)
		}
	}
}
