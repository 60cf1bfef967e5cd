package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/doorstep-health/doorstep/api"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/demo"
	"github.com/doorstep-health/doorstep/server"
)

// chromiumPath finds a Chromium to drive. Outside CI a missing browser
// skips the test with a message; under CI=true it fails (.ci/run installs
// the Debian chromium package).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("Chromium is not installed: the console browser test needs it (.ci/run installs the Debian chromium package)")
	}
	t.Skip("Chromium is not installed (apt-get install -y chromium); skipping the console browser test")
	return ""
}

// newBrowser starts headless Chromium with a fresh profile and returns a
// chromedp context bounded by timeout for the test's steps, and the
// browser's own context (no timeout) for a failure screenshot.
func newBrowser(t *testing.T, timeout time.Duration, width, height int) (ctx, browser context.Context) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelCtx := chromedp.NewContext(actx)
	// The first call starts the browser, which lives as long as bctx: no
	// timeout on it; the test's steps run under ctx.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		cancelCtx()
		cancelAlloc()
		t.Fatalf("start Chromium: %v", err)
	}
	ctx, cancelTimeout := context.WithTimeout(bctx, timeout)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx, bctx
}

// screenshotOnFailure saves the page as a PNG if the test has failed, and
// says where.
func screenshotOnFailure(t *testing.T, browser context.Context) {
	if !t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(browser, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("no failure screenshot: %v", err)
		return
	}
	dir := os.Getenv("DOORSTEP_FAILURE_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	p := filepath.Join(dir, fmt.Sprintf("console-failure-%s.png", time.Now().UTC().Format("20060102T150405")))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Logf("no failure screenshot: %v", err)
		return
	}
	t.Logf("failure screenshot: %s", p)
}

// TestConsoleInBrowser drives the console in headless Chromium over the
// demo data: the Wigan coordinator signs in, finds the seeded Clinical
// Frailty Scale conflict from the team home, resolves it with a reason;
// the JSON API then shows it settled and a link worker's SDK replica
// receives the resolution on its next pull. A form without its CSRF token
// is refused. DOORSTEP_CONSOLE_SCREENSHOT=path saves the conflict page (for
// the docs) and DOORSTEP_CONSOLE_WIDTH sets the window width (default 1100).
func TestConsoleInBrowser(t *testing.T) {
	width := 1100
	if w, err := strconv.Atoi(os.Getenv("DOORSTEP_CONSOLE_WIDTH")); err == nil && w >= 320 {
		width = w // e.g. 768, to look at the tablet layout
	}
	all, browser := newBrowser(t, 120*time.Second, width, 1100)
	// Each step gets 30 s, so a page that never shows what a step waits
	// for fails the test quickly (with a screenshot).
	do := func(actions ...chromedp.Action[chromedp.Void]) error {
		ctx, cancel := context.WithTimeout(all, 30*time.Second)
		defer cancel()
		return chromedp.Do(ctx, actions...)
	}
	ctx := all
	e, _ := openAt(t, t.TempDir(), nil)
	ds := demo.Build(1, time.Now())
	loadDemo(t, e, ds)
	var cf demo.Conflict
	for _, c := range ds.Conflicts {
		if c.Field == "cfs" {
			cf = c
		}
	}
	if cf.Record == "" {
		t.Fatal("demo has no CFS conflict")
	}
	ref := client.Ref{Team: cf.Team, Collection: cf.Collection, ID: cf.Record}

	// A link worker's tablet, synced: it holds the conflict.
	rep, err := client.Open(context.Background(), client.Options{Dir: t.TempDir(), EncryptionKey: sdkKey, ServerURL: e.ts.URL, DeviceName: "amara's tablet (e2e)", HTTPClient: &http.Client{Timeout: 20 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	if _, err := rep.Login(context.Background(), "amara", demo.DemoPassword); err != nil {
		t.Fatal(err)
	}
	syncUntilDone(t, rep)
	if got, err := rep.Get(context.Background(), ref); err != nil || !got.Fields["cfs"].Conflict {
		t.Fatalf("tablet before: %+v %v", got, err)
	}

	// The op ID of the value 6 (from the MDT letter), to pick on the page.
	var tr api.TokenResponse
	if st, p := e.doJSON(http.MethodPost, "/v1/auth/login", "", api.LoginRequest{Username: "diane", Password: demo.DemoPassword, DeviceID: crdt.NewReplicaID().String()}, &tr); st != http.StatusOK {
		t.Fatalf("API login: %d %+v", st, p)
	}
	recPath := "/v1/teams/" + cf.Team + "/records/people/" + cf.Record
	var before server.RecordJSON
	if st, _ := e.doJSON(http.MethodGet, recPath, tr.AccessToken, nil, &before); st != http.StatusOK {
		t.Fatalf("record: %d", st)
	}
	six := ""
	for _, v := range before.Fields["cfs"].Values {
		if fmt.Sprint(v.Value) == "6" {
			six = v.Op
		}
	}
	if six == "" {
		t.Fatalf("no value 6 among %+v", before.Fields["cfs"].Values)
	}

	defer screenshotOnFailure(t, browser)
	reason := "Confirmed with the frailty MDT: CFS 6 after the fall (letter of this week)."
	conflictLink := chromedp.CSS(`a[href$="/conflicts/people/` + cf.Record + `/cfs"]`)
	err = do(
		chromedp.Navigate(e.ts.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "diane"),
		chromedp.SendKeys(chromedp.ID("password"), demo.DemoPassword),
		chromedp.Click(chromedp.CSS(`main button[type=submit]`)),
		chromedp.WaitVisible(conflictLink),
	)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	home, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"conflicts waiting", "cfs"} {
		if !strings.Contains(home, want) {
			t.Errorf("team home lacks %q: %.400s", want, home)
		}
	}
	// From the team home to the conflict by keyboard alone: the first Tab
	// lands on the skip link, further Tabs reach the conflict's link, Enter
	// opens it.
	if err := do(chromedp.KeyEvent("\t")); err != nil {
		t.Fatal(err)
	}
	if cls, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.className`)); err != nil || cls != "skip" {
		t.Errorf("first Tab focused %q, want the skip link (%v)", cls, err)
	}
	reached := false
	for range 40 {
		href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.getAttribute('href') || ''`))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(href, "/conflicts/people/"+cf.Record+"/cfs") {
			reached = true
			break
		}
		if err := do(chromedp.KeyEvent("\t")); err != nil {
			t.Fatal(err)
		}
	}
	if !reached {
		t.Fatal("the conflict's link is not reachable with Tab from the team home")
	}
	if err := do(chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.ID("reason"))); err != nil {
		t.Fatalf("open the conflict with Enter: %v", err)
	}
	conflict, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Amara Okafor", "Chloe Marsh", "written offline", "Had seen", "required for a clinical field"} {
		if !strings.Contains(conflict, want) {
			t.Errorf("conflict page lacks %q", want)
		}
	}
	if p := os.Getenv("DOORSTEP_CONSOLE_SCREENSHOT"); p != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err = do(
		chromedp.Click(chromedp.CSS(`input[value="op:`+six+`"]`)),
		chromedp.SendKeys(chromedp.ID("reason"), reason),
		chromedp.Click(chromedp.CSS(`main button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`.flash`)),
	)
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	after, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(`main`))) // with the closed history sections
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(after, "Conflict on cfs resolved") || !strings.Contains(after, reason) {
		t.Errorf("record page after resolving: %.400s", after)
	}

	// At 768 px wide (a tablet) the home, conflict queue, changes and
	// record pages fit without scrolling sideways.
	if err := do(chromedp.EmulateViewport(768, 1024)); err != nil {
		t.Fatalf("viewport: %v", err)
	}
	for _, p := range []string{"", "/conflicts", "/changes", "/outcomes", "/records/people/" + cf.Record} {
		if err := do(chromedp.Navigate(e.ts.URL+"/console/teams/"+cf.Team+p), chromedp.WaitVisible(chromedp.CSS(`h1`))); err != nil {
			t.Fatalf("open %s at 768 px: %v", p, err)
		}
		w, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
		if err != nil {
			t.Fatal(err)
		}
		if w > 768 {
			t.Errorf("%s is %d px wide at a 768 px viewport", p, w)
		}
	}
	if err := do(chromedp.ResetViewport()); err != nil {
		t.Fatal(err)
	}

	// The sign-out form without its CSRF token is refused.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('header form input[name=csrf]').remove(), true`)); err != nil {
		t.Fatalf("drop the CSRF field: %v", err)
	}
	if err := do(chromedp.Click(chromedp.CSS(`header form button`)), chromedp.WaitVisible(chromedp.CSS(`.error`))); err != nil {
		t.Fatalf("form without CSRF: %v", err)
	}
	refused, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(refused, "security token") {
		t.Errorf("form without CSRF was not refused: %.300s", refused)
	}

	// The JSON API shows it settled, with the coordinator's reason.
	var rec server.RecordJSON
	if st, _ := e.doJSON(http.MethodGet, recPath, tr.AccessToken, nil, &rec); st != http.StatusOK {
		t.Fatalf("record after: %d", st)
	}
	if f := rec.Fields["cfs"]; f.Conflict || fmt.Sprint(f.Value) != "6" {
		t.Fatalf("cfs after resolving in the console: %+v", f)
	}
	var list struct{ Records []api.RecordRef }
	if st, _ := e.doJSON(http.MethodGet, "/v1/teams/"+cf.Team+"/conflicts", tr.AccessToken, nil, &list); st != http.StatusOK {
		t.Fatal(st)
	}
	for _, r := range list.Records {
		if r.ID == cf.Record {
			t.Errorf("record still listed as a conflict")
		}
	}
	var hist struct{ History []server.HistoryJSON }
	if st, _ := e.doJSON(http.MethodGet, recPath+"/history", tr.AccessToken, nil, &hist); st != http.StatusOK {
		t.Fatal(st)
	}
	if h := hist.History[len(hist.History)-1]; h.Field != "cfs" || h.AuthorName != "Diane Fletcher" || h.Reason != reason {
		t.Errorf("resolution in history: %+v", h)
	}

	// The tablet's next pull receives the resolution.
	syncUntilDone(t, rep)
	got, err := rep.Get(context.Background(), ref)
	if err != nil || got.Fields["cfs"].Conflict || fmt.Sprint(got.Fields["cfs"].Value) != "6" {
		t.Fatalf("tablet after its pull: %+v %v", got.Fields["cfs"], err)
	}
}

// syncUntilDone runs one SDK sync, which pulls until the server has
// nothing more.
func syncUntilDone(t *testing.T, r *client.Replica) {
	t.Helper()
	if _, err := r.Sync(context.Background()); err != nil {
		t.Fatalf("sync: %v", err)
	}
}
