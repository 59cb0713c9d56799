package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// liveURL waits for the "live statistics: URL" line a command prints when
// its --http server is up, and returns the URL.
func liveURL(t *testing.T, stderr *lockedBuffer) string {
	t.Helper()
	re := regexp.MustCompile(`live statistics: (\S+) `)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no live statistics URL in:\n%s", stderr)
	return ""
}

// scrapeURL fetches a /metrics page with client and parses it with the
// Prometheus text parser.
func scrapeURL(t *testing.T, client *http.Client, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return fams
}

// value returns the sum of a counter's or gauge's series.
func value(fams map[string]*dto.MetricFamily, name string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	var v float64
	for _, m := range f.GetMetric() {
		v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return v, true
}

// stable scrapes url until the named figures stop changing for a second,
// and returns the last scrape. Used once the transfer is over, so what
// the command writes into --stats at exit is what was scraped.
func stable(t *testing.T, url string, names ...string) map[string]*dto.MetricFamily {
	t.Helper()
	var last string
	var since time.Time
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		fams := scrapeURL(t, http.DefaultClient, url)
		var b strings.Builder
		for _, n := range names {
			v, _ := value(fams, n)
			b.WriteString(n + "=" + big.NewFloat(v).String() + " ")
		}
		if b.String() != last {
			last, since = b.String(), time.Now()
			continue
		}
		if time.Since(since) >= time.Second {
			return fams
		}
	}
	t.Fatalf("figures never settled: %s", last)
	return nil
}

// TestHTTPMetricsMatchStats runs send → netem (10% loss each way) → recv,
// all with --http, scrapes /metrics with a real HTTP client during the
// transfer (the counters must grow and parse) and after it (the sender
// lingers 6 s so that its figures settle while it still serves), and
// checks the last scrape against each command's final --stats JSON.
func TestHTTPMetricsMatchStats(t *testing.T) {
	dir := t.TempDir()
	recvStats, sendStats := filepath.Join(dir, "recv.json"), filepath.Join(dir, "send.json")
	recv, addr, recvErr := startRecv(t, nil, "--http", "127.0.0.1:0", "--stats", recvStats, "--mode", "unordered")
	recvURL := liveURL(t, recvErr) + "metrics"
	_, relay, _ := startNetem(t, addr, "--fwd", "loss random 10%", "--rev", "loss random 10%", "--http", "127.0.0.1:0")

	var sendErr lockedBuffer
	send := exec.Command(telewireBin, "send", "--to", relay, "--gen", "market", "--count", "6000", "--rate", "2000",
		"--linger", "6s", "--stats", sendStats, "--fec", "8,2", "--http", "127.0.0.1:0")
	send.Stderr = &sendErr
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { send.Process.Kill() })
	sendURL := liveURL(t, &sendErr) + "metrics"

	// During the transfer: packets_total grows between scrapes.
	var seen []float64
	for deadline := time.Now().Add(20 * time.Second); len(seen) < 3 && time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if v, ok := value(scrapeURL(t, http.DefaultClient, recvURL), "telewire_receiver_packets_total"); ok && v > 0 && (len(seen) == 0 || v > seen[len(seen)-1]) {
			seen = append(seen, v)
		}
	}
	if len(seen) < 3 {
		t.Fatalf("receiver packets_total did not grow across scrapes: %v", seen)
	}
	sendFams := stable(t, sendURL, "telewire_sender_packets_total", "telewire_sender_retransmissions_total", "telewire_sender_parity_total", "telewire_sender_nacks_total")
	wait(t, send, &sendErr, 30*time.Second)
	recvFams := stable(t, recvURL, "telewire_receiver_packets_total", "telewire_receiver_datagrams_total", "telewire_receiver_rebuilt_total", "telewire_receiver_repaired_by_retransmission_total", "telewire_receiver_nacks_total")
	recv.Process.Signal(syscall.SIGINT)
	wait(t, recv, recvErr, 30*time.Second)

	ss, rs := readJSON(t, sendStats), readJSON(t, recvStats)
	stream := rs["streams"].([]any)[0].(map[string]any)
	num := func(m map[string]any, k string) float64 { return m[k].(float64) }
	for _, c := range []struct {
		fams   map[string]*dto.MetricFamily
		metric string
		want   float64
	}{
		{sendFams, "telewire_sender_packets_total", num(ss, "packets")},
		{sendFams, "telewire_sender_payload_bytes_total", num(ss, "payload_bytes")},
		{sendFams, "telewire_sender_parity_total", num(ss, "parity")},
		{sendFams, "telewire_sender_retransmissions_total", num(ss, "retransmits")},
		{sendFams, "telewire_sender_nacks_total", num(ss, "nacks")},
		{sendFams, "telewire_sender_malformed_total", num(ss, "malformed")},
		{recvFams, "telewire_receiver_datagrams_total", num(rs, "datagrams")},
		{recvFams, "telewire_receiver_bytes_total", num(rs, "bytes_read")},
		{recvFams, "telewire_receiver_malformed_total", num(rs, "malformed")},
		{recvFams, "telewire_receiver_delivered_total", num(rs, "delivered")},
		{recvFams, "telewire_receiver_packets_total", num(stream, "received")},
		{recvFams, "telewire_receiver_rebuilt_total", num(stream, "recovered_fec")},
		{recvFams, "telewire_receiver_repaired_by_retransmission_total", num(stream, "recovered_rtx")},
		{recvFams, "telewire_receiver_retransmissions_total", num(stream, "retransmits")},
		{recvFams, "telewire_receiver_nacks_total", num(stream, "nacks")},
		{recvFams, "telewire_receiver_skipped_total", num(stream, "skipped")},
		{recvFams, "telewire_receiver_parity_total", num(stream, "parity_received")},
		{recvFams, "telewire_receiver_lost_packets", num(stream, "lost")},
	} {
		got, ok := value(c.fams, c.metric)
		if !ok || got != c.want {
			t.Errorf("%s = %v (present %v), --stats says %v", c.metric, got, ok, c.want)
		}
	}
	// The link was lossy and both repairs worked, so the figures compared
	// above are not all zero.
	if num(stream, "lost") == 0 || num(stream, "recovered_fec") == 0 || num(stream, "recovered_rtx") == 0 {
		t.Errorf("expected loss repaired both ways: %v", stream)
	}
	h := recvFams["telewire_receiver_delay_seconds"].GetMetric()[0].GetHistogram()
	if float64(h.GetSampleCount()) != num(stream, "delay_samples") || h.GetSampleSum() <= 0 {
		t.Errorf("delay histogram count %d sum %v, stats delay_samples %v", h.GetSampleCount(), h.GetSampleSum(), num(stream, "delay_samples"))
	}
}

// TestHTTPRefusesClearTextOffLoopback: statistics are not served in clear
// text beyond this machine unless asked; and the TLS flags need --http.
func TestHTTPRefusesClearTextOffLoopback(t *testing.T) {
	for _, args := range [][]string{
		{"recv", "--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"},
		{"recv", "--listen", "127.0.0.1:0", "--http", ":0"},
		{"send", "--to", "127.0.0.1:9", "--http", "[::]:0"},
		{"netem", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:9", "--http", "0.0.0.0:0"},
		{"demo", "--http", "0.0.0.0:0"},
		{"recv", "--listen", "127.0.0.1:0", "--tls-cert", "x.pem"},
		{"recv", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"},
	} {
		cmd := exec.Command(telewireBin, args...)
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "--") {
			t.Errorf("telewire %q: exit %d, want 2:\n%s", args, code, out)
		}
		if strings.Contains(args[len(args)-1], "0.0.0.0") && !strings.Contains(string(out), "clear text") {
			t.Errorf("telewire %q does not say why:\n%s", args, out)
		}
	}
}

// testCert writes a self-signed certificate for 127.0.0.1 and its key
// into dir and returns their paths and a pool that trusts it.
func testCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "telewire test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

// TestHTTPS serves recv's statistics over TLS with a test certificate:
// the page, /stats and /metrics answer over HTTPS (TLS 1.2 or later),
// TLS 1.1 and plain HTTP are refused.
func TestHTTPS(t *testing.T) {
	cert, key, pool := testCert(t, t.TempDir())
	recv, _, stderr := startRecv(t, nil, "--http", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
	url := liveURL(t, stderr)
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("URL %s is not https", url)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	if fams := scrapeURL(t, client, url+"metrics"); fams["telewire_receiver_datagrams_total"] == nil {
		t.Errorf("no receiver metrics over HTTPS")
	}
	for _, path := range []string{"", "stats", "app.js"} {
		resp, err := client.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
			t.Errorf("GET /%s: %s, TLS %v", path, resp.Status, resp.TLS)
		}
	}
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}}}
	if resp, err := old.Get(url + "stats"); err == nil {
		resp.Body.Close()
		t.Errorf("TLS 1.1 accepted")
	}
	if resp, err := http.Get("http://" + strings.TrimPrefix(url, "https://") + "stats"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP answered 200 on the HTTPS port")
		}
		resp.Body.Close()
	}
	var snap struct {
		Role string `json:"role"`
	}
	resp, err := client.Get(url + "stats")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil || snap.Role != "recv" {
		t.Errorf("/stats: role %q, %v", snap.Role, err)
	}
	resp.Body.Close()
	recv.Process.Signal(syscall.SIGINT)
	wait(t, recv, stderr, 15*time.Second)
}
