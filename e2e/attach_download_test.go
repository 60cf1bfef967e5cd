package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	gosync "sync"
	"sync/atomic"
	"testing"

	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/server"
)

// downProxy forwards TCP connections to target, counting the bytes the
// server sends; with cutAfter > 0 it closes a connection once it has
// carried that many of them, and after the first cut refuses every
// connection (the link is gone).
type downProxy struct {
	ln       net.Listener
	target   string
	cutAfter int64
	down     atomic.Int64
	dead     atomic.Bool
	wg       gosync.WaitGroup
	mu       gosync.Mutex
	conns    map[net.Conn]bool
}

func newDownProxy(t *testing.T, target string, cutAfter int64) *downProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &downProxy{ln: ln, target: target, cutAfter: cutAfter, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.pipe(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close() // idle keep-alive connections
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *downProxy) pipe(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = true
	p.mu.Unlock()
	defer func() {
		c.Close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	if p.dead.Load() {
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	go func() { io.Copy(s, c); s.Close() }()
	var r io.Reader = s
	if p.cutAfter > 0 {
		r = io.LimitReader(s, p.cutAfter)
	}
	n, _ := io.Copy(c, &countReader{r: r, n: &p.down})
	if p.cutAfter > 0 && n == p.cutAfter {
		p.dead.Store(true)
	}
}

// TestAttachmentDownloadResumesAfterRestart: a 3 MiB photo's download is
// cut after 1 MiB and the link then dies; the app is closed. Reopened on a
// working link, the download continues from what was stored (whole
// 256 KiB chunks) instead of byte 0, and the file verifies.
func TestAttachmentDownloadResumesAfterRestart(t *testing.T) {
	ctx := context.Background()
	env := newSDKEnv(t, nil, func(c *server.Config) { c.DeviceRate = -1 })
	ann := env.device("ann", "", nil)
	visit := client.Ref{Team: sdkTeam, Collection: "contacts", ID: "c-dl"}
	if err := ann.CreateWithID(ctx, visit, map[string]any{"person_id": "p-dl", "contact_type": "home_visit"}); err != nil {
		t.Fatal(err)
	}
	photo := make([]byte, 3<<20+1000)
	rand.Read(photo)
	copy(photo, []byte{0xff, 0xd8, 0xff, 0xe0})
	a, err := ann.Attach(ctx, visit, "photos", bytes.NewReader(photo), "dl.jpg")
	if err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, ann)
	if n, err := ann.UploadAttachments(ctx); err != nil || n != 1 {
		t.Fatalf("upload %d %v", n, err)
	}

	dir := t.TempDir()
	cut := newDownProxy(t, env.http.Listener.Addr().String(), 1<<20)
	bea := env.device("bea", dir, nil)
	bea.SetServerURL("http://" + cut.ln.Addr().String())
	err = bea.FetchAttachment(ctx, visit, a)
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("download over a link that dies: %v, want ErrUnavailable", err)
	}
	if _, err := bea.ReadAttachment(ctx, sdkTeam, a.SHA256); !errors.Is(err, client.ErrAttachmentNotLocal) {
		t.Fatalf("a partial download is readable: %v", err)
	}
	first := cut.down.Load()
	bea.Close()

	count := newDownProxy(t, env.http.Listener.Addr().String(), 0)
	bea = env.open(dir, func(o *client.Options) { o.ServerURL = "http://" + count.ln.Addr().String() })
	if err := bea.FetchAttachment(ctx, visit, a); err != nil {
		t.Fatalf("resumed download: %v", err)
	}
	b, err := bea.ReadAttachment(ctx, sdkTeam, a.SHA256)
	if err != nil || !bytes.Equal(b, photo) {
		t.Fatalf("resumed download: %d bytes, %v", len(b), err)
	}
	second := count.down.Load()
	t.Logf("first link carried %d bytes before dying; the reopened app downloaded %d more for the %d-byte file", first, second, len(photo))
	if second > int64(len(photo))-(1<<20-client.ChunkSize)+64<<10 { // 64 KiB for the replies' headers
		t.Fatalf("the reopened app downloaded %d bytes: it did not resume from the stored chunks", second)
	}
}
