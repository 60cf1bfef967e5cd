package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/crdt"
)

// doorstepBin builds cmd/doorstep once per test binary run.
var doorstepBin = sync1(func() (string, error) {
	dir, err := os.MkdirTemp("", "doorstep-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "doorstep")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/doorstep").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func sync1(f func() (string, error)) func(t *testing.T) string {
	var once gosync.Once
	var v string
	var err error
	return func(t *testing.T) string {
		t.Helper()
		once.Do(func() { v, err = f() })
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// proc is a running `doorstep serve`.
type proc struct {
	cmd  *exec.Cmd
	addr string
}

// doorstep runs a doorstep command to completion.
func doorstep(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(doorstepBin(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("doorstep %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// serveProc starts `doorstep serve` on a random loopback port.
func serveProc(t *testing.T, data string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"serve", "--data", data, "--addr", "127.0.0.1:0", "--log-format", "json"}, extra...)
	cmd := exec.Command(doorstepBin(t), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		var line struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
			go io.Copy(io.Discard, stderr)
			return &proc{cmd: cmd, addr: line.Addr}
		}
	}
	t.Fatal("doorstep serve did not start")
	return nil
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
}

// switchProxy forwards to whichever server is current, so devices keep
// one URL across a restore.
type switchProxy struct {
	target atomic.Pointer[httputil.ReverseProxy]
}

func (s *switchProxy) point(t *testing.T, addr string) {
	u, err := url.Parse("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	s.target.Store(httputil.NewSingleHostReverseProxy(u))
}

func (s *switchProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.target.Load().ServeHTTP(w, r)
}

func adminToken(t *testing.T, base, user string) string {
	t.Helper()
	body, _ := json.Marshal(api.LoginRequest{Username: user, Password: password, DeviceID: crdt.NewReplicaID().String(), DeviceName: "ops"})
	resp, err := http.Post(base+"/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr api.TokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("login %s: %d %v", user, resp.StatusCode, err)
	}
	return tr.AccessToken
}

func seedData(t *testing.T, data string) {
	t.Helper()
	pw := []string{"DOORSTEP_PASSWORD=" + password}
	doorstep(t, nil, "team", "add", "--data", data, "--id", "wigan", "--name", "Wigan Frailty")
	for _, u := range []string{"ann", "bea", "cal"} {
		doorstep(t, pw, "user", "add", "--data", data, "--username", u, "--role", "link_worker", "--teams", "wigan")
	}
	doorstep(t, pw, "user", "add", "--data", data, "--username", "root", "--role", "admin", "--teams", "wigan")
}

// TestRestoreDevicesReconnect: three SDK devices sync with a real server
// process; a backup is taken; the devices keep working and syncing; the
// server is killed and restored from the backup into a new directory; the
// devices reconnect. Afterwards every op any device had acknowledged or
// pulled is on the server, every device converges, nothing is doubled and
// no device is wedged; each device's Status says the server was restored.
func TestRestoreDevicesReconnect(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d1, bk := filepath.Join(root, "d1"), filepath.Join(root, "backups")
	seedData(t, d1)
	p1 := serveProc(t, d1, "--backup-dir", bk)
	px := &switchProxy{}
	px.point(t, p1.addr)
	hs := httptest.NewServer(openAPIChecked(t, px))
	defer hs.Close()

	var devs []*client.Replica
	for _, u := range []string{"ann", "bea", "cal"} {
		r, err := client.Open(ctx, client.Options{Dir: t.TempDir(), EncryptionKey: sdkKey, ServerURL: hs.URL, DeviceName: u,
			HTTPClient: &http.Client{Timeout: 20 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Login(ctx, u, password); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, r)
	}
	syncAll := func(phase string) {
		t.Helper()
		for round := 0; round < 2; round++ {
			for i, d := range devs {
				if _, err := d.Sync(ctx); err != nil {
					t.Fatalf("%s: device %d sync: %v", phase, i, err)
				}
			}
		}
	}
	create := func(phase string, n int) {
		t.Helper()
		for i, d := range devs {
			for k := 0; k < n; k++ {
				ref := client.Ref{Team: "wigan", Collection: "people", ID: fmt.Sprintf("%s-d%d-%d", phase, i, k)}
				if err := d.CreateWithID(ctx, ref, map[string]any{"given_name": ref.ID, "family_name": "Family " + ref.ID, "date_of_birth": "1940-02-03", "address": "1 Test Street, Wigan"}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	create("before", 3)
	syncAll("before")

	// Backup through the admin route into --backup-dir.
	tok := adminToken(t, hs.URL, "root")
	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/v1/admin/backups", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var br struct {
		File  string `json:"file"`
		Items int64  `json:"items"`
	}
	json.NewDecoder(resp.Body).Decode(&br)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || br.File == "" {
		t.Fatalf("backup: %d %+v", resp.StatusCode, br)
	}

	// More work after the backup: new records, edits of each other's
	// records, all synced (acknowledged and pulled by everyone).
	create("after", 3)
	for i, d := range devs {
		ref := client.Ref{Team: "wigan", Collection: "people", ID: fmt.Sprintf("before-d%d-0", (i+1)%3)}
		if err := d.Set(ctx, ref, "phone", fmt.Sprintf("0194200000%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	syncAll("after")
	// One device writes again and syncs alone: acknowledged, not pulled by
	// the others before the server dies.
	if err := devs[0].Set(ctx, client.Ref{Team: "wigan", Collection: "people", ID: "after-d1-0"}, "phone", "ann late"); err != nil {
		t.Fatal(err)
	}
	if _, err := devs[0].Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// And one write stays unsent.
	if err := devs[2].Set(ctx, client.Ref{Team: "wigan", Collection: "people", ID: "before-d0-1"}, "phone", "cal offline"); err != nil {
		t.Fatal(err)
	}

	// Disaster: kill the server, restore the backup into a new directory.
	p1.kill(t)
	d2 := filepath.Join(root, "d2")
	out := doorstep(t, nil, "restore", "--in", filepath.Join(bk, br.File), "--data", d2, "--erasures", filepath.Join(d1, "erasures.jsonl"))
	if !strings.Contains(out, "verified records") || !strings.Contains(out, "new epoch") {
		t.Fatalf("restore output:\n%s", out)
	}
	p2 := serveProc(t, d2)
	px.point(t, p2.addr)

	// Reconnect: nobody wedged.
	syncAll("reconnect")
	for i, d := range devs {
		if st := d.Status(); st.ServerRestored.IsZero() || st.LastError != nil {
			t.Fatalf("device %d status after restore: %+v", i, st)
		}
		if n, _ := d.PendingOps(ctx); len(n) != 0 {
			t.Fatalf("device %d still has %d pending ops", i, len(n))
		}
	}
	// Work goes on in the new epoch.
	create("later", 1)
	syncAll("later")

	// Converged, complete, nothing doubled.
	var states []map[client.Ref]*crdt.Record
	for _, d := range devs {
		s, err := d.States(ctx)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, s)
	}
	if want := 3*3 + 3*3 + 3; len(states[0]) != want {
		t.Fatalf("device 0 holds %d records, want %d", len(states[0]), want)
	}
	for i := 1; i < 3; i++ {
		if len(states[i]) != len(states[0]) {
			t.Fatalf("device %d holds %d records, device 0 %d", i, len(states[i]), len(states[0]))
		}
		for ref, rec := range states[0] {
			a, _ := crdt.MarshalRecord(rec)
			b, _ := crdt.MarshalRecord(states[i][ref])
			if !bytes.Equal(a, b) {
				t.Fatalf("device %d differs from device 0 on %v", i, ref)
			}
		}
	}
	for ref, rec := range states[0] {
		for name, f := range rec.Fields {
			if f.Conflict() {
				t.Fatalf("%v field %s has %d concurrent values (an op doubled or lost its pred)", ref, name, len(f.Entries))
			}
		}
	}
	if w, _ := states[1][client.Ref{Team: "wigan", Collection: "people", ID: "after-d1-0"}].Field("phone").Winner(); !bytes.Equal(w.Value, crdt.MustValue("ann late")) {
		t.Fatalf("acknowledged write lost: %s", w.Value)
	}
	if w, _ := states[0][client.Ref{Team: "wigan", Collection: "people", ID: "before-d0-1"}].Field("phone").Winner(); !bytes.Equal(w.Value, crdt.MustValue("cal offline")) {
		t.Fatalf("unsent write lost: %s", w.Value)
	}

	// The server holds every op: a fresh device bootstrapping from it gets
	// exactly the devices' states.
	fresh, err := client.Open(ctx, client.Options{Dir: t.TempDir(), EncryptionKey: sdkKey, ServerURL: hs.URL, DeviceName: "fresh"})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, err := fresh.Login(ctx, "bea", password); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	fs, _ := fresh.States(ctx)
	if len(fs) != len(states[0]) {
		t.Fatalf("server holds %d records, devices %d", len(fs), len(states[0]))
	}
	for ref, rec := range states[0] {
		a, _ := crdt.MarshalRecord(rec)
		b, _ := crdt.MarshalRecord(fs[ref])
		if !bytes.Equal(a, b) {
			t.Fatalf("server state of %v differs from the devices'", ref)
		}
	}
}
