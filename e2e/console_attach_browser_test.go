package e2e

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/demo"
)

// testPNG is a real 64×48 PNG, so the browser can decode the thumbnail.
func testPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for x := range 64 {
		for y := range 48 {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 5), 120, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestConsoleAttachmentsInBrowser: a link worker's tablet attaches a photo
// and a signed letter (PDF) to a visit and uploads them, then attaches a
// second photo it has not uploaded. In headless Chromium the coordinator's
// record page shows the photo as a thumbnail the browser decoded, the PDF
// as a link that downloads the exact bytes, and the third as "pending
// upload"; the files come through the console's session-bound route, and
// the same URL without the session, or under another record, gives no
// file.
func TestConsoleAttachmentsInBrowser(t *testing.T) {
	all, browser := newBrowser(t, 90*time.Second, 1100, 1100)
	do := func(actions ...chromedp.Action[chromedp.Void]) error {
		ctx, cancel := context.WithTimeout(all, 30*time.Second)
		defer cancel()
		return chromedp.Do(ctx, actions...)
	}
	ctx := context.Background()
	e, _ := openAt(t, t.TempDir(), nil)
	ds := demo.Build(1, time.Now())
	loadDemo(t, e, ds)
	team, person := ds.Conflicts[0].Team, ""
	for _, c := range ds.Conflicts {
		if c.Collection == "people" {
			team, person = c.Team, c.Record
		}
	}
	rep, err := client.Open(ctx, client.Options{Dir: t.TempDir(), EncryptionKey: sdkKey, ServerURL: e.ts.URL, DeviceName: "amara's tablet (e2e)", HTTPClient: &http.Client{Timeout: 20 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	if _, err := rep.Login(ctx, "amara", demo.DemoPassword); err != nil {
		t.Fatal(err)
	}
	syncUntilDone(t, rep)
	visit := client.Ref{Team: team, Collection: "contacts", ID: "c-attach-browser"}
	if err := rep.CreateWithID(ctx, visit, map[string]any{"person_id": person, "contact_type": "home_visit"}); err != nil {
		t.Fatal(err)
	}
	photo := testPNG(t)
	pdf := []byte("%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
	if _, err := rep.Attach(ctx, visit, "photos", bytes.NewReader(photo), "grab rail.png"); err != nil {
		t.Fatal(err)
	}
	if _, err := rep.Attach(ctx, visit, "photos", bytes.NewReader(pdf), "signed consent.pdf"); err != nil {
		t.Fatal(err)
	}
	syncUntilDone(t, rep)
	if n, err := rep.UploadAttachments(ctx); err != nil || n != 2 {
		t.Fatalf("upload: %d %v", n, err)
	}
	later := append(bytes.Clone(photo), 0) // another file, same look
	if _, err := rep.Attach(ctx, visit, "photos", bytes.NewReader(later), "stairs.png"); err != nil {
		t.Fatal(err)
	}
	syncUntilDone(t, rep) // its metadata reaches the server; its bytes do not

	defer screenshotOnFailure(t, browser)
	recURL := e.ts.URL + "/console/teams/" + team + "/records/contacts/" + visit.ID
	err = do(
		chromedp.Navigate(e.ts.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "diane"),
		chromedp.SendKeys(chromedp.ID("password"), demo.DemoPassword),
		chromedp.Click(chromedp.CSS(`main button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`header form button`)), // signed in: the sign-out form
		chromedp.Navigate(recURL),
		chromedp.WaitReady(chromedp.CSS(`.attachments`)),
	)
	if err != nil {
		t.Fatalf("sign in and open the record: %v", err)
	}
	// Open the photos field and wait for the thumbnail to be decoded.
	if _, err := chromedp.Run(all, chromedp.Evaluate[bool](`[...document.querySelectorAll('details')].forEach(d => d.open = true), true`)); err != nil {
		t.Fatal(err)
	}
	var width int
	for deadline := time.Now().Add(20 * time.Second); ; {
		width, err = chromedp.Run(all, chromedp.Evaluate[int](`(() => { const i = document.querySelector('img.thumb'); return i && i.complete ? i.naturalWidth : -1 })()`))
		if err != nil {
			t.Fatal(err)
		}
		if width >= 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if width != 64 {
		t.Fatalf("thumbnail decoded %d px wide, want 64", width)
	}
	text, err := chromedp.Run(all, chromedp.Text(chromedp.CSS(`main`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"grab rail.png", "signed consent.pdf", "PDF", "pending upload", "stairs.png"} {
		if !strings.Contains(text, want) {
			t.Errorf("record page lacks %q: %.600s", want, text)
		}
	}
	if n, err := chromedp.Run(all, chromedp.Evaluate[int](`document.querySelectorAll('.attachment .tag.pending').length`)); err != nil || n != 1 {
		t.Errorf("%d attachments shown pending, want 1 (%v)", n, err)
	}
	// The PDF link downloads the exact bytes, through the session.
	pdfURL, err := chromedp.Run(all, chromedp.Evaluate[string](`[...document.querySelectorAll('.attachment a[download]')].map(a => a.href).find(h => h) || ''`))
	if err != nil || !strings.Contains(pdfURL, "/attachments/photos/") {
		t.Fatalf("PDF link %q %v", pdfURL, err)
	}
	// The console's CSP allows no fetch from the page: read the files with
	// the browser's session cookie instead.
	cookies, err := chromedp.Run(all, func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
		res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{pdfURL}})
		return res.Cookies, err
	})
	if err != nil || len(cookies) == 0 {
		t.Fatalf("browser cookies: %v %v", cookies, err)
	}
	get := func(u string, withSession bool) (int, string, []byte) {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if withSession {
			for _, c := range cookies {
				req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
			}
		}
		res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header.Get("Content-Type"), b
	}
	if st, ct, b := get(pdfURL, true); st != http.StatusOK || ct != "application/pdf" || !bytes.Equal(b, pdf) {
		t.Fatalf("PDF through the console: %d %s %q", st, ct, b)
	}
	// Without the session cookie the same URL gives no file.
	if st, ct, b := get(pdfURL, false); bytes.Contains(b, pdf) || ct == "application/pdf" {
		t.Fatalf("the file is served without a session: %d %s", st, ct)
	}
	// Under another record of the team (which does not attach it) the
	// hash opens nothing, even signed in.
	other := strings.Replace(pdfURL, "/records/contacts/"+visit.ID+"/", "/records/people/"+person+"/", 1)
	if st, _, b := get(other, true); st != http.StatusNotFound || bytes.Contains(b, pdf) {
		t.Fatalf("the hash under another record: %d, want 404", st)
	}
}
