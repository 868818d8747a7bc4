package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	_ "image/jpeg" // FullScreenshot with a quality below 100 is JPEG
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
)

// chromiumPath finds a headless-capable Chromium; .ci/run installs Debian's chromium.
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestDashboardChromium: on a 3-node cluster of real agent processes, GET /ui rendered by
// headless Chromium at a phone's width shows the three members alive, and without a reload
// the page picks up a write made on another node; its screenshot is not an empty page.
func TestDashboardChromium(t *testing.T) {
	chrome := chromiumPath()
	if chrome == "" {
		t.Skip("SKIP: the dashboard test needs Chromium (Debian: apt-get install chromium); .ci/run installs it when it can")
	}
	bin := buildPatina(t)
	c := startCluster(t, bin, 3, "ui")

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		// Containers often give /dev/shm 64 MB, where renderers stall; use /tmp instead.
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(390, 844), // a phone
		chromedp.UserDataDir(t.TempDir()),
	)
	// One deadline for the browser's whole life (the first Run starts it under this context),
	// so that a stuck Chromium fails the test in bounded time instead of eating CI's budget.
	bctx, cancelB := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancelB()
	actx, cancelAlloc := chromedp.NewExecAllocator(bctx, opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()

	// An empty page must fail the screenshot check, or the check proves nothing.
	var blank []byte
	if err := chromedp.Run(ctx, chromedp.Navigate("about:blank"), chromedp.CaptureScreenshot(&blank)); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	if frac := inkFraction(t, blank); frac > 0.01 {
		t.Fatalf("the blank page has %.1f%% ink: the screenshot check cannot tell an empty page", 100*frac)
	}

	page := "http://" + c.nodes[0].api + "/ui"
	if err := chromedp.Run(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	eval := func(js string, out any) {
		t.Helper()
		if err := chromedp.Run(ctx, chromedp.Evaluate(js, out)); err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
	}
	testutil.WaitFor(t, 60*time.Second, "the page to list three alive members", func() bool {
		var n int
		eval(`document.querySelectorAll("#members tr.member td.state.alive").length`, &n)
		return n == 3
	})
	var status string
	eval(`document.getElementById("status").textContent`, &status)
	if len(status) < 4 || status[:4] != "live" {
		t.Errorf("status line %q, want live", status)
	}

	versions := func() int {
		var s string
		eval(`document.getElementById("cluster-versions").textContent.replace(/,/g, "")`, &s)
		n, err := strconv.Atoi(s)
		if err != nil {
			return -1
		}
		return n
	}
	before := versions()
	if before < 0 {
		t.Fatal("the page shows no version count")
	}
	// A write on another node reaches the page through replication and the page's polling.
	ectx, ecancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ecancel()
	if _, err := c.nodes[2].cl.Exec(ectx, client.Options{}, client.Stmt("INSERT INTO t (id, v, node) VALUES (1, 'ui', 2)")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "the page to show the write made on node 2", func() bool {
		return versions() > before
	})

	var shot []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&shot, 90)); err != nil {
		t.Fatal(err)
	}
	if frac := inkFraction(t, shot); frac < 0.03 {
		t.Errorf("the dashboard's screenshot is %.1f%% ink: the page rendered (nearly) empty", 100*frac)
	}
	if t.Failed() {
		p := filepath.Join(os.TempDir(), fmt.Sprintf("patina-dashboard-%d.png", time.Now().UnixNano()))
		if os.WriteFile(p, shot, 0o644) == nil {
			t.Logf("screenshot kept in %s", p)
		}
	}
}

// inkFraction is the share of a screenshot's pixels that differ from its top-left pixel
// (the page background): 0 for an empty page.
func inkFraction(tb testing.TB, shot []byte) float64 {
	tb.Helper()
	img, err := decodeShot(shot)
	if err != nil {
		tb.Fatalf("decode screenshot: %v", err)
	}
	b := img.Bounds()
	bg := img.At(b.Min.X, b.Min.Y)
	br, bgc, bb, _ := bg.RGBA()
	var ink, all int
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			all++
			if absDiff(r, br)+absDiff(g, bgc)+absDiff(bl, bb) > 3*0x0800 {
				ink++
			}
		}
	}
	return float64(ink) / float64(max(all, 1))
}

func decodeShot(b []byte) (image.Image, error) {
	if img, err := png.Decode(bytes.NewReader(b)); err == nil {
		return img, nil
	}
	img, _, err := image.Decode(bytes.NewReader(b))
	return img, err
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}
