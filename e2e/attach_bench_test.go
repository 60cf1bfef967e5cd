package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"testing"
	"time"

	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/server"
)

// BenchmarkAttachment measures attachment throughput through the SDK and
// the real HTTP server on loopback (no rate limit): Upload is
// UploadAttachments of one freshly attached 20 MiB photo (HEAD, 4 MiB
// PATCHes, each fsynced, hash check), Download is FetchAttachment of it on
// another tablet (GET, hash check, stored encrypted in the replica).
func BenchmarkAttachment(b *testing.B) {
	ctx := context.Background()
	env := newSDKEnv(b, nil, func(c *server.Config) { c.DeviceRate = -1 })
	ann := env.device("ann", "", nil)
	visit := client.Ref{Team: sdkTeam, Collection: "contacts", ID: "c-bench"}
	if err := ann.CreateWithID(ctx, visit, map[string]any{"person_id": "p-bench", "contact_type": "home_visit"}); err != nil {
		b.Fatal(err)
	}
	photo := func() []byte {
		p := make([]byte, 20<<20)
		if _, err := rand.Read(p); err != nil {
			b.Fatal(err)
		}
		copy(p, []byte{0xff, 0xd8, 0xff, 0xe0})
		return p
	}
	b.Run("Upload", func(b *testing.B) {
		b.SetBytes(20 << 20)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			if _, err := ann.Attach(ctx, visit, "photos", bytes.NewReader(photo()), fmt.Sprint("p", i)); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if n, err := ann.UploadAttachments(ctx); err != nil || n != 1 {
				b.Fatalf("upload %d %v", n, err)
			}
		}
	})
	a, err := ann.Attach(ctx, visit, "photos", bytes.NewReader(photo()), "dl")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ann.UploadAttachments(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("Download", func(b *testing.B) {
		b.SetBytes(20 << 20)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			bea := env.device("bea", "", nil)
			b.StartTimer()
			if err := bea.FetchAttachment(ctx, visit, a); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			bea.Close()
			b.StartTimer()
		}
	})
}

// BenchmarkAttachmentSlowLink: one 512 KiB photo uploaded and downloaded
// over a 64 kbit/s link each way with 250 ms one way (500 ms round trip),
// against a server with the deployed read and write timeouts (2 and 3
// minutes) and the SDK's default request sizing (10 s) and 60 s HTTP
// client timeout. "shaped" is shapedLink (fixed 250 ms); "toxiproxy" is
// toxicLink (Toxiproxy's latency and bandwidth toxics, 250 ± 100 ms).
// Reported: wall seconds each way, the goodput in kbit/s (file bits over
// wall time; the link's ceiling is 64), and the TCP bytes each way during
// the upload and download (the link's count for shaped, the device
// connections' for toxiproxy).
//
//	go test -run '^$' -bench '^BenchmarkAttachmentSlowLink$' -benchtime 1x ./e2e
func BenchmarkAttachmentSlowLink(b *testing.B) {
	for _, kind := range []string{"shaped", "toxiproxy"} {
		b.Run(kind, func(b *testing.B) { benchAttachmentSlowLink(b, kind) })
	}
}

func benchAttachmentSlowLink(b *testing.B, kind string) {
	ctx := context.Background()
	const size = 512 << 10
	var upS, downS float64
	var up, down int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		env := newSDKEnv(b, nil, func(c *server.Config) { c.DeviceRate = -1 })
		hs := timedServer(b, env, 2*time.Minute, 3*time.Minute)
		var url string
		var counts func() (int64, int64)
		var httpClient *http.Client // nil: the SDK's default
		switch kind {
		case "shaped":
			link := newShapedLink(b, hs.Listener.Addr().String(), 64_000, 250*time.Millisecond)
			url, counts = link.url(), func() (int64, int64) { return link.up.Load(), link.down.Load() }
		default:
			link := &toxicLink{}
			link.start(b, hs.Listener.Addr().String())
			url, counts, httpClient = link.url, func() (int64, int64) { return link.sent.Load(), link.received.Load() }, link.client()
		}
		// Sign in and sync on the direct URL; only the attachment traffic
		// crosses the slow link.
		opts := func(o *client.Options) { o.HTTPClient = httpClient }
		ann := env.device("ann", "", opts)
		bea := env.device("bea", "", opts)
		visit := client.Ref{Team: sdkTeam, Collection: "contacts", ID: "c-slow"}
		if err := ann.CreateWithID(ctx, visit, map[string]any{"person_id": "p-slow", "contact_type": "home_visit"}); err != nil {
			b.Fatal(err)
		}
		p := make([]byte, size)
		rand.Read(p)
		copy(p, []byte{0xff, 0xd8, 0xff, 0xe0})
		a, err := ann.Attach(ctx, visit, "photos", bytes.NewReader(p), "slow.jpg")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ann.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		ann.SetServerURL(url)
		bea.SetServerURL(url)
		u0, d0 := counts()
		b.StartTimer()
		t0 := time.Now()
		if n, err := ann.UploadAttachments(ctx); err != nil || n != 1 {
			b.Fatalf("upload %d %v", n, err)
		}
		upS += time.Since(t0).Seconds()
		t0 = time.Now()
		if err := bea.FetchAttachment(ctx, visit, a); err != nil {
			b.Fatal(err)
		}
		downS += time.Since(t0).Seconds()
		b.StopTimer()
		u1, d1 := counts()
		up += u1 - u0
		down += d1 - d0
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(upS/n, "upload-s")
	b.ReportMetric(downS/n, "download-s")
	b.ReportMetric(size*8/1000/(upS/n), "upload-kbit/s")
	b.ReportMetric(size*8/1000/(downS/n), "download-kbit/s")
	b.ReportMetric(float64(up)/n, "link-up-B")
	b.ReportMetric(float64(down)/n, "link-down-B")
}
