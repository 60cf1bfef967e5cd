package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/backup"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/vmihailenco/msgpack/v5"
)

// pushBulk logs user in on a new device and pushes n people with a long
// text field each, 250 to a change, over HTTP to base.
func pushBulk(t *testing.T, base, user string, n int) {
	t.Helper()
	dev := crdt.NewReplicaID()
	body, _ := json.Marshal(api.LoginRequest{Username: user, Password: password, DeviceID: dev.String(), DeviceName: "bulk"})
	resp, err := http.Post(base+"/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var tr api.TokenResponse
	json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	clk := crdt.NewClock(time.Now, time.Minute)
	long := strings.Repeat("needs large print and a hearing loop; ", 50)
	seq := uint64(0)
	for i := 0; i < n; {
		seq++
		ch := api.Change{Seq: seq}
		for ; i < n && len(ch.Ops) < 250*5; i++ {
			id := fmt.Sprintf("bulk-%06d", i)
			for _, f := range [][2]string{{"given_name", "Given " + id}, {"family_name", "Family"}, {"date_of_birth", "1941-03-04"}, {"address", "1 Bulk Row"}, {"communication_needs", long}} {
				ch.Ops = append(ch.Ops, crdt.Op{ID: crdt.OpID{Time: clk.Now(), Replica: dev}, Team: "wigan", Collection: "people", Record: id, Field: f[0], Kind: crdt.KindWrite, Value: crdt.MustValue(f[1])})
			}
		}
		b, _ := msgpack.Marshal(&api.SyncRequest{Protocol: api.ProtocolVersion, Replica: dev, Clock: clk.Now(), Changes: []api.Change{ch}, PullLimit: 1})
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/sync", bytes.NewReader(b))
		req.Header.Set("Content-Type", api.ContentType)
		req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		rb, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var sr api.SyncResponse
		if res.StatusCode != http.StatusOK || msgpack.Unmarshal(rb, &sr) != nil || len(sr.Results) != 1 || sr.Results[0].Status != api.ChangeApplied || len(sr.Results[0].Ops) > 0 {
			t.Fatalf("bulk push: %d %+v", res.StatusCode, sr.Results)
		}
	}
}

// TestBackupKilled: a server killed with SIGKILL in the middle of writing a
// backup leaves no file that looks complete (only a temporary file, which
// verification calls incomplete); after a restart a new backup restores
// cleanly, and a copy of it with one flipped byte is refused.
func TestBackupKilled(t *testing.T) {
	root := t.TempDir()
	d1, bk := filepath.Join(root, "d1"), filepath.Join(root, "backups")
	seedData(t, d1)
	p := serveProc(t, d1, "--backup-dir", bk)
	base := "http://" + p.addr
	const people = 4000
	pushBulk(t, base, "ann", people)
	tok := adminToken(t, base, "root")

	var killedTmp string
	for attempt := 0; attempt < 5 && killedTmp == ""; attempt++ {
		done := make(chan struct{})
		go func() {
			defer close(done)
			req, _ := http.NewRequest(http.MethodPost, base+"/v1/admin/backups", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
		}()
		// Kill as soon as a temporary file has bytes in it.
	poll:
		for {
			select {
			case <-done:
				break poll // finished before the kill: try again
			default:
			}
			ents, _ := os.ReadDir(bk)
			for _, e := range ents {
				if info, err := e.Info(); err == nil && strings.Contains(e.Name(), ".tmp-") && info.Size() > 0 {
					p.kill(t)
					killedTmp = filepath.Join(bk, e.Name())
					break poll
				}
			}
			time.Sleep(200 * time.Microsecond)
		}
		<-done
	}
	if killedTmp == "" {
		t.Fatal("every backup finished before it could be killed")
	}
	ents, _ := os.ReadDir(bk)
	var finals []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".dsbak") {
			finals = append(finals, e.Name())
			// A backup finished in an earlier attempt is complete; any
			// file under a final name must verify.
			f, _ := os.Open(filepath.Join(bk, e.Name()))
			_, err := backup.Verify(f)
			f.Close()
			if err != nil {
				t.Fatalf("%s looks complete but does not verify: %v", e.Name(), err)
			}
		}
	}
	f, _ := os.Open(killedTmp)
	_, err := backup.Verify(f)
	f.Close()
	switch {
	case errors.Is(err, backup.ErrIncomplete):
		out, rerr := exec.Command(doorstepBin(t), "restore", "--in", killedTmp, "--data", filepath.Join(root, "never")).CombinedOutput()
		if rerr == nil || !strings.Contains(string(out), "incomplete") {
			t.Fatalf("restore of the killed backup: %v\n%s", rerr, out)
		}
	case err == nil && len(finals) > 0:
		// Killed in the microseconds between linking the finished file to
		// its final name and removing the temporary name: both are the
		// same complete file.
		t.Log("killed just after the backup was complete")
	default:
		t.Fatalf("killed backup's temporary file: %v, want ErrIncomplete", err)
	}

	// Restart on the same data; a new backup restores cleanly.
	p = serveProc(t, d1, "--backup-dir", bk)
	base = "http://" + p.addr
	tok = adminToken(t, base, "root")
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/admin/backups", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var br struct {
		File string `json:"file"`
	}
	json.NewDecoder(res.Body).Decode(&br)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("backup after restart: %d", res.StatusCode)
	}
	good := filepath.Join(bk, br.File)
	d2 := filepath.Join(root, "d2")
	doorstep(t, nil, "restore", "--in", good, "--data", d2)
	p2 := serveProc(t, d2)
	st, _ := countPeople(t, "http://"+p2.addr)
	if st != people {
		t.Fatalf("restored server holds %d people, want %d", st, people)
	}

	// One flipped byte: refused, nothing created.
	b, _ := os.ReadFile(good)
	b[len(b)/3] ^= 0x08
	bad := filepath.Join(root, "flipped.dsbak")
	os.WriteFile(bad, b, 0o600)
	out, rerr := exec.Command(doorstepBin(t), "restore", "--in", bad, "--data", filepath.Join(root, "d3")).CombinedOutput()
	if rerr == nil || !strings.Contains(string(out), "corrupt") {
		t.Fatalf("restore of a flipped backup: %v\n%s", rerr, out)
	}
	if _, err := os.Stat(filepath.Join(root, "d3")); !os.IsNotExist(err) {
		t.Fatal("a refused restore created its target")
	}
}

// countPeople bootstraps a new device of bea's and counts the people.
func countPeople(t *testing.T, base string) (int, error) {
	t.Helper()
	dev := crdt.NewReplicaID()
	body, _ := json.Marshal(api.LoginRequest{Username: "bea", Password: password, DeviceID: dev.String(), DeviceName: "count"})
	resp, err := http.Post(base+"/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var tr api.TokenResponse
	json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	var cursor []byte
	n := 0
	for range 1000 {
		b, _ := msgpack.Marshal(&api.SyncRequest{Protocol: api.ProtocolVersion, Replica: dev, Cursor: cursor, PullLimit: 5000})
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/sync", bytes.NewReader(b))
		req.Header.Set("Content-Type", api.ContentType)
		req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		rb, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var sr api.SyncResponse
		if err := msgpack.Unmarshal(rb, &sr); err != nil {
			t.Fatalf("count: %d %v", res.StatusCode, err)
		}
		n += len(sr.Snapshot)
		cursor = sr.Cursor
		if !sr.More {
			return n, nil
		}
	}
	t.Fatal("bootstrap did not end")
	return 0, nil
}
