package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"net/http"
	"net/http/httptest"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/server"
)

// shapedLink is a TCP proxy emulating a poor mobile link on the wire:
// each direction carries at most bps bits per second and every byte
// arrives delay after the link sent it (one way: the round trip is twice
// delay). Unlike slowLink (whole bodies, delayed), it shapes the byte
// stream, headers and TCP handshakes included, so a slow body is slow for
// the server too and its timeouts apply, as on a real link.
type shapedLink struct {
	ln       net.Listener
	target   string
	bps      int64
	delay    time.Duration
	up, down atomic.Int64 // bytes delivered each way
	wg       gosync.WaitGroup
	mu       gosync.Mutex
	conns    map[net.Conn]bool
}

func newShapedLink(t testing.TB, target string, bps int64, delay time.Duration) *shapedLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &shapedLink{ln: ln, target: target, bps: bps, delay: delay, conns: map[net.Conn]bool{}}
	l.wg.Add(1)
	go l.serve()
	t.Cleanup(func() {
		ln.Close()
		l.mu.Lock()
		for c := range l.conns {
			c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return l
}

func (l *shapedLink) url() string { return "http://" + l.ln.Addr().String() }

func (l *shapedLink) track(c net.Conn, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if on {
		l.conns[c] = true
	} else {
		delete(l.conns, c)
	}
}

func (l *shapedLink) serve() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			time.Sleep(2 * l.delay) // the TCP handshake's round trip
			s, err := net.Dial("tcp", l.target)
			if err != nil {
				c.Close()
				return
			}
			l.track(c, true)
			l.track(s, true)
			var wg gosync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); l.shape(s, c, &l.up) }()
			go func() { defer wg.Done(); l.shape(c, s, &l.down) }()
			wg.Wait()
			c.Close()
			s.Close()
			l.track(c, false)
			l.track(s, false)
		}()
	}
}

// shape copies src to dst at the link's rate and delay, then half-closes
// dst (or closes both ends if dst fails).
func (l *shapedLink) shape(dst, src net.Conn, n *atomic.Int64) {
	type piece struct {
		b   []byte
		due time.Time
	}
	ch := make(chan piece, 16) // the link's queue: backpressure beyond it
	go func() {
		defer close(ch)
		var free time.Time // when the link has sent what it holds
		buf := make([]byte, 1024)
		for {
			k, err := src.Read(buf)
			if k > 0 {
				start := time.Now()
				if free.After(start) {
					start = free
				}
				free = start.Add(time.Duration(int64(k) * 8 * int64(time.Second) / l.bps))
				ch <- piece{bytes.Clone(buf[:k]), free.Add(l.delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for p := range ch {
		time.Sleep(time.Until(p.due))
		if _, err := dst.Write(p.b); err != nil {
			src.Close()
			dst.Close()
			for range ch {
			}
			return
		}
		n.Add(int64(len(p.b)))
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// timedServer serves env's handler on loopback with the given read and
// write timeouts (httptest's default server has none), as a deployed
// server does.
func timedServer(t testing.TB, env *sdkEnv, read, write time.Duration) *httptest.Server {
	t.Helper()
	hs := httptest.NewUnstartedServer(env.srv.Handler())
	hs.Config.ReadTimeout, hs.Config.WriteTimeout = read, write
	hs.Start()
	t.Cleanup(hs.Close)
	return hs
}

// TestAttachmentOverShapedLink: on a link where a whole file takes longer
// than the device's HTTP client timeout and the server's read timeout, the
// SDK sizes its requests to the link, so the upload and the download both
// complete and the downloaded bytes hash right. (With one GET for the
// whole file the download was cut by the timeout every time and never
// completed.) Scaled down to stay quick: 2 Mbit/s, 20 ms each way, 1 s
// client and server timeouts, a 300 ms request target.
func TestAttachmentOverShapedLink(t *testing.T) {
	ctx := context.Background()
	env := newSDKEnv(t, nil, func(c *server.Config) { c.DeviceRate = -1 })
	hs := timedServer(t, env, time.Second, time.Second)
	link := newShapedLink(t, hs.Listener.Addr().String(), 2_000_000, 20*time.Millisecond)
	slow := func(o *client.Options) {
		o.ServerURL = link.url()
		o.HTTPClient = &http.Client{Timeout: time.Second} // the SDK's default is 60 s: 480 KB at 64 kbit/s
		o.AttachmentRequestTime = 300 * time.Millisecond
	}
	ann := env.device("ann", "", slow)
	visit := client.Ref{Team: sdkTeam, Collection: "contacts", ID: "c-shaped"}
	if err := ann.CreateWithID(ctx, visit, map[string]any{"person_id": "p-shaped", "contact_type": "home_visit"}); err != nil {
		t.Fatal(err)
	}
	photo := make([]byte, 400<<10)
	rand.Read(photo)
	copy(photo, []byte{0xff, 0xd8, 0xff, 0xe0})
	if 8*int64(len(photo))*int64(time.Second)/2_000_000 < int64(time.Second) {
		t.Fatal("the file crosses the link within the timeout: the test proves nothing")
	}
	a, err := ann.Attach(ctx, visit, "photos", bytes.NewReader(photo), "p.jpg")
	if err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, ann)
	t0 := time.Now()
	if n, err := ann.UploadAttachments(ctx); err != nil || n != 1 {
		t.Fatalf("upload over the shaped link: %d %v", n, err)
	}
	t.Logf("upload %v, %d bytes up", time.Since(t0), link.up.Load())
	bea := env.device("bea", "", slow)
	t0 = time.Now()
	if err := bea.FetchAttachment(ctx, visit, a); err != nil {
		t.Fatalf("download over the shaped link: %v", err)
	}
	t.Logf("download %v, %d bytes down", time.Since(t0), link.down.Load())
	if b, err := bea.ReadAttachment(ctx, sdkTeam, a.SHA256); err != nil || !bytes.Equal(b, photo) {
		t.Fatalf("downloaded %d bytes, %v", len(b), err)
	}
}
