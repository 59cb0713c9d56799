package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium returns the path of a Chromium or Chrome binary, or skips.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium or Chrome on PATH (Debian: apt-get install chromium; .ci/run installs it)")
	return ""
}

// chartState is what the page records on each chart's canvas.
type chartState struct {
	Chart  string `json:"chart"`
	Points int    `json:"points"`
	Time   int64  `json:"t"`
	Last   string `json:"last"`
}

const readCharts = `[...document.querySelectorAll('canvas[data-chart]')].map(c => ({
	chart: c.dataset.chart, points: +c.dataset.points, t: +(c.dataset.lastTime || 0), last: c.dataset.last || "{}"}))`

// TestLivePageInBrowser loads the demo's live page in headless Chromium
// while the demo streams, and reads the charts' data twice, a second
// apart: every chart must have moved on, with the figures the demo
// produces (traffic, delay, RTT, FEC, pacing) present. With
// TELEWIRE_LIVE_PNG=FILE it also saves a screenshot there (how
// docs/img/live.png is made).
func TestLivePageInBrowser(t *testing.T) {
	browser := chromium(t)
	var stderr lockedBuffer
	demo := exec.Command(telewireBin, "demo", "--duration", "60s", "--http", "127.0.0.1:0")
	demo.Stderr = &stderr
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { demo.Process.Kill(); demo.Wait() })
	url := liveURL(t, &stderr)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.WindowSize(1320, 940))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	cctx, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()

	read := func() (map[string]chartState, int) {
		t.Helper()
		states, err := chromedp.Run(cctx, chromedp.Evaluate[[]chartState](readCharts))
		if err != nil {
			t.Fatal(err)
		}
		updates, err := chromedp.Run(cctx, chromedp.Evaluate[int](`window.telewireLive.updates`))
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]chartState{}
		for _, s := range states {
			m[s.Chart] = s
		}
		return m, updates
	}
	if err := chromedp.Do(cctx, chromedp.Navigate(url),
		chromedp.WaitVisible(`canvas[data-chart="rate"]`)); err != nil {
		t.Fatal(err)
	}
	// Let a few seconds of history and the first FEC decisions build up.
	deadline := time.Now().Add(30 * time.Second)
	for {
		first, _ := read()
		if first["rate"].Points >= 8 && lastOf(t, first["fec"])["m"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("charts did not fill: %+v", first)
		}
		time.Sleep(250 * time.Millisecond)
	}
	a, ua := read()
	time.Sleep(time.Second)
	b, ub := read()
	if ub-ua < 2 {
		t.Errorf("%d updates in a second, want several", ub-ua)
	}
	for _, name := range []string{"rate", "loss", "delay", "rtt", "fec", "pacing"} {
		if b[name].Time <= a[name].Time || b[name].Points < a[name].Points {
			t.Errorf("chart %s did not advance: %+v then %+v", name, a[name], b[name])
		}
	}
	for chart, series := range map[string][]string{
		"rate": {"first"}, "delay": {"p50", "p99", "jitter", "p99recent"}, "rtt": {"rtt"}, "fec": {"k", "m"}, "pacing": {"pacing"},
	} {
		last := lastOf(t, b[chart])
		for _, s := range series {
			if v, ok := last[s].(float64); !ok || (v <= 0 && s != "m") {
				t.Errorf("chart %s series %s: last value %v", chart, s, last[s])
			}
		}
	}
	if path := os.Getenv("TELEWIRE_LIVE_PNG"); path != "" {
		time.Sleep(40 * time.Second) // a fuller history for the picture
		png, err := chromedp.Run(cctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}
}

func lastOf(t *testing.T, s chartState) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s.Last), &m); err != nil {
		t.Fatalf("chart %s last %q: %v", s.Chart, s.Last, err)
	}
	return m
}
