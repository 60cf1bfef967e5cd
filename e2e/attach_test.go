package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/internal/rawgrep"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/server"
)

// cuttingProxy forwards TCP connections to target and closes each one
// once it has carried cutAfter bytes from the client: a link that drops
// every megabyte. It counts every client byte it forwards.
type cuttingProxy struct {
	ln       net.Listener
	target   string
	cutAfter int64
	sent     atomic.Int64
	cuts     atomic.Int64
	// downAfterCuts, if set, takes the link down after that many cuts.
	downAfterCuts int64
	wg            gosync.WaitGroup
	down          atomic.Bool // refuse every connection: the link is gone
	mu            gosync.Mutex
	conns         map[net.Conn]bool
}

func newCuttingProxy(t *testing.T, target string, cutAfter int64) *cuttingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{ln: ln, target: target, cutAfter: cutAfter, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
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

func (p *cuttingProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns[c] = true
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.pipe(c)
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
		}()
	}
}

func (p *cuttingProxy) pipe(c net.Conn) {
	defer c.Close()
	if p.down.Load() {
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(c, s) // replies pass untouched
		c.Close()
		close(done)
	}()
	n, _ := io.Copy(s, &countReader{r: io.LimitReader(c, p.cutAfter), n: &p.sent})
	if n == p.cutAfter {
		p.cuts.Add(1)
		if p.downAfterCuts > 0 && p.cuts.Load() >= p.downAfterCuts {
			p.down.Store(true)
		}
	}
	s.Close()
	c.Close()
	<-done
}

type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// TestAttachmentResumableUpload: a 20 MB photo attached offline is
// uploaded through a link that cuts the connection after every 1 MB and
// completes with at most 1.2× its size sent; the record synced first,
// without waiting for it. Another tablet downloads it and checks its hash.
// An erasure of the person deletes it from the server's disk (searched in
// the data directory) and from both tablets. A tablet of another team
// cannot fetch it knowing its hash.
func TestAttachmentResumableUpload(t *testing.T) {
	ctx := context.Background()
	var dataDir string
	env := newSDKEnv(t, nil, func(c *server.Config) { dataDir = c.DataDir })
	if _, err := env.srv.Auth().CreateUser(ctx, auth.NewUser{Username: "ada", Name: "ada", Password: "ada-password", Role: api.RoleAdmin, Teams: []string{sdkTeam}}); err != nil {
		t.Fatal(err)
	}
	proxy := newCuttingProxy(t, env.http.Listener.Addr().String(), 1<<20)
	ann := env.open(t.TempDir(), func(o *client.Options) {
		o.ServerURL = "http://" + proxy.ln.Addr().String()
	})
	if _, err := ann.Login(ctx, "ann", "ann-password"); err != nil {
		// The login itself may be cut only if it crosses 1 MB: it does not.
		t.Fatal(err)
	}
	bea := env.device("bea", "", nil)

	person := client.Ref{Team: sdkTeam, Collection: "people", ID: "p-photo"}
	visit := client.Ref{Team: sdkTeam, Collection: "contacts", ID: "c-photo"}
	if err := ann.CreateWithID(ctx, person, sdkPerson("Edna")); err != nil {
		t.Fatal(err)
	}
	if err := ann.CreateWithID(ctx, visit, map[string]any{"person_id": person.ID, "contact_type": "home_visit"}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	photo := make([]byte, 20<<20)
	if _, err := rand.Read(photo); err != nil {
		t.Fatal(err)
	}
	copy(photo, []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F', 0})
	a, err := ann.Attach(ctx, visit, "photos", bytes.NewReader(photo), "trip-hazard.jpg")
	if err != nil {
		t.Fatal(err)
	}
	if a.ContentType != "image/jpeg" || a.Size != int64(len(photo)) {
		t.Fatalf("attachment %+v", a)
	}
	if st, _ := ann.AttachmentStatus(ctx, sdkTeam, a.SHA256); st != client.AttachmentPendingUpload {
		t.Fatalf("state %v, want pending upload", st)
	}
	if s := ann.Status(); s.UploadsPending != 1 || s.UploadBytesPending != int64(len(photo)) {
		t.Fatalf("status before upload %+v", s)
	}
	t.Logf("attached: %v", time.Since(t0))
	// The record syncs without its photo. The upload then runs under the
	// env's realistic device rate limit (5/s, burst 20): the SDK waits out
	// each rate_limited reply.
	sdkMustSync(t, ann)
	before := proxy.sent.Load()

	start := time.Now()
	for i := 0; ; i++ {
		n, err := ann.UploadAttachments(ctx)
		if err == nil && n == 1 {
			break
		}
		if i > 5 {
			t.Fatalf("upload did not complete: %d, %v (status %+v)", n, err, ann.Status())
		}
	}
	sent := proxy.sent.Load() - before
	t.Logf("20 MiB through a link cut every 1 MiB: %d cuts, %d bytes sent (%.3f× the file), SDK counted %d, %v",
		proxy.cuts.Load(), sent, float64(sent)/float64(len(photo)), ann.Status().UploadBytesSent, time.Since(start))
	if proxy.cuts.Load() < 15 {
		t.Fatalf("only %d cuts: the proxy did not cut", proxy.cuts.Load())
	}
	if float64(sent) > 1.2*float64(len(photo)) {
		t.Fatalf("sent %d bytes for a %d-byte file, over 1.2×", sent, len(photo))
	}
	if st, _ := ann.AttachmentStatus(ctx, sdkTeam, a.SHA256); st != client.AttachmentLocal || ann.Status().UploadsPending != 0 {
		t.Fatalf("after upload: %v, %+v", st, ann.Status())
	}

	t0 = time.Now()
	// Bea sees the metadata, then downloads on demand.
	sdkMustSync(t, bea)
	rec, err := bea.Get(ctx, visit)
	if err != nil {
		t.Fatal(err)
	}
	entries := rec.Fields["photos"].Entries
	if len(entries) != 1 {
		t.Fatalf("photos on bea: %+v", rec.Fields["photos"])
	}
	got, err := schema.ParseAttachment(entries[0].Value)
	if err != nil || got.SHA256 != a.SHA256 {
		t.Fatalf("bea's attachment %+v %v", got, err)
	}
	if st, _ := bea.AttachmentStatus(ctx, sdkTeam, got.SHA256); st != client.AttachmentNotDownloaded {
		t.Fatalf("bea state %v", st)
	}
	if err := bea.FetchAttachment(ctx, visit, got); err != nil {
		t.Fatal(err)
	}
	b, err := bea.ReadAttachment(ctx, sdkTeam, got.SHA256)
	if err != nil || !bytes.Equal(b, photo) {
		t.Fatalf("bea's bytes: %d, %v", len(b), err)
	}
	t.Logf("downloaded: %v", time.Since(t0))
	t0 = time.Now()
	// Metadata lying about the hash is refused and nothing kept.
	lie := got
	lie.SHA256 = "00" + got.SHA256[2:]
	if err := env.device("cal", "", nil).FetchAttachment(ctx, visit, lie); err == nil {
		t.Fatal("fetch of a wrong hash succeeded")
	}

	// Another team's tablet, knowing the hash.
	if _, err := env.srv.Auth().CreateTeam(ctx, "ashton", "Ashton"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.srv.Auth().CreateUser(ctx, auth.NewUser{Username: "oli", Name: "oli", Password: "oli-password", Role: api.RoleLinkWorker, Teams: []string{"ashton"}}); err != nil {
		t.Fatal(err)
	}
	oli := env.device("oli", "", nil)
	err = oli.FetchAttachment(ctx, visit, got)
	var p *api.Problem
	if !errors.As(err, &p) || p.Code != api.CodeForbidden {
		t.Fatalf("other team's fetch: %v, want forbidden", err)
	}
	if err := oli.FetchAttachment(ctx, client.Ref{Team: "ashton", Collection: "contacts", ID: "x"}, got); !errors.As(err, &p) || p.Code != api.CodeNotFound {
		t.Fatalf("other team's fetch under its own team: %v, want not_found", err)
	}

	t.Logf("other team: %v", time.Since(t0))
	t0 = time.Now()
	// The photo is on the server's disk, by name and by content.
	marker := string(photo[10<<20 : 10<<20+64])
	if files, err := rawgrep.Files(dataDir, marker); err != nil || len(files) == 0 {
		t.Fatalf("photo bytes not found on the server's disk before erasure: %v %v", files, err)
	}
	var rep struct {
		Records      []api.RecordRef `json:"records"`
		BlobsDeleted []string        `json:"blobs_deleted"`
	}
	admin := sdkLogin(t, env, "ada", "ada-password")
	req := map[string]any{"team": sdkTeam, "collection": "people", "id": person.ID, "cascade": true}
	if st := sdkPostJSON(t, env, admin, "/v1/admin/erasures", req, &rep); st != http.StatusOK {
		t.Fatalf("erasure: %d", st)
	}
	if len(rep.BlobsDeleted) != 1 || rep.BlobsDeleted[0] != a.SHA256 {
		t.Fatalf("erasure report %+v", rep)
	}
	if files, err := rawgrep.Files(dataDir, marker); err != nil || len(files) != 0 {
		t.Fatalf("photo bytes still on the server's disk after erasure: %v %v", files, err)
	}
	if m, _ := filepath.Glob(filepath.Join(dataDir, "blobs", "*", "*", "*", a.SHA256+"*")); len(m) != 0 {
		t.Fatalf("blob files left: %v", m)
	}
	t.Logf("erased: %v", time.Since(t0))
	for _, r := range []*client.Replica{ann, bea} {
		sdkMustSync(t, r)
		if _, err := r.ReadAttachment(ctx, sdkTeam, a.SHA256); !errors.Is(err, client.ErrAttachmentNotLocal) {
			t.Fatalf("%s still holds the photo: %v", r.ID(), err)
		}
	}
}

// TestAttachmentUploadSurvivesRestart: the link dies after 3 MiB of an
// 8 MiB photo (Status then shows at least 1 MiB acknowledged, as HEAD
// learnt it); the app is closed. Reopened on a working link, the
// background loop finishes the upload from what the server acknowledged,
// and the bytes sent over both links stay within 1.2× of the file.
func TestAttachmentUploadSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	env := newSDKEnv(t, nil, func(c *server.Config) { c.DeviceRate = -1 })
	proxy := newCuttingProxy(t, env.http.Listener.Addr().String(), 1<<20)
	proxy.downAfterCuts = 3
	dir := t.TempDir()
	ann := env.open(dir, func(o *client.Options) { o.ServerURL = "http://" + proxy.ln.Addr().String() })
	if _, err := ann.Login(ctx, "ann", "ann-password"); err != nil {
		t.Fatal(err)
	}
	visit := client.Ref{Team: sdkTeam, Collection: "contacts", ID: "c-restart"}
	if err := ann.CreateWithID(ctx, visit, map[string]any{"person_id": "p-restart", "contact_type": "home_visit"}); err != nil {
		t.Fatal(err)
	}
	photo := make([]byte, 8<<20)
	if _, err := rand.Read(photo); err != nil {
		t.Fatal(err)
	}
	copy(photo, []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"))
	a, err := ann.Attach(ctx, visit, "photos", bytes.NewReader(photo), "ramp.png")
	if err != nil || a.ContentType != "image/png" {
		t.Fatalf("attach %+v %v", a, err)
	}
	sdkMustSync(t, ann)
	before := proxy.sent.Load()
	if _, err := ann.UploadAttachments(ctx); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("upload over a dead link: %v, want ErrUnavailable", err)
	}
	if s := ann.Status(); s.UploadsPending != 1 || s.UploadBytesPending <= 0 || s.UploadBytesPending > int64(len(photo))-1<<20 {
		t.Fatalf("status after the link died: %+v", s)
	}
	sent := proxy.sent.Load() - before
	ann.Close()

	ann = env.open(dir, nil) // the server's own address: a working link
	bg, cancel := context.WithCancel(ctx)
	defer cancel()
	go ann.Background(bg)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if st, _ := ann.AttachmentStatus(ctx, sdkTeam, a.SHA256); st == client.AttachmentLocal {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background upload did not finish: %+v", ann.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	// Bytes the reopened replica sent (it counts what it hands to the
	// network; on loopback nothing is lost).
	sent += ann.Status().UploadBytesSent
	t.Logf("8 MiB, link dead after 3 cuts, app restarted: %d bytes sent (%.3f×)", sent, float64(sent)/float64(len(photo)))
	if float64(sent) > 1.2*float64(len(photo)) {
		t.Fatalf("sent %d for %d bytes, over 1.2×", sent, len(photo))
	}
	bea := env.device("bea", "", nil)
	if err := bea.FetchAttachment(ctx, visit, a); err != nil {
		t.Fatal(err)
	}
}
