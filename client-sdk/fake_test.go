package client

import (
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// fakeServer is a small in-test server speaking the sync contract in
// msgpack over real HTTP, so the SDK's sync loop can be tested in this
// package without importing the real server (which the SDK must not). The
// end-to-end tests in e2e/ use the real server.
type fakeServer struct {
	t     *testing.T
	srv   *httptest.Server
	clock *crdt.Clock

	mu       gosync.Mutex
	hwm      map[crdt.ReplicaID]uint64
	log      []api.PulledChange
	records  map[Ref]*crdt.Record
	access   map[string]string // access token → device
	refresh  map[string]string // live refresh token → device
	spent    map[string]bool
	revoked  map[string]bool
	expired  map[string]bool
	applied  int // changes applied (not duplicates)
	n        int
	dropNext int         // drop this many replies after handling the request
	purges   map[int]Ref // log position → record erased there
	// slowAbove, if set, makes requests asking for pages bigger than it
	// hang until the client gives up: a page too big for a slow link.
	slowAbove int
	// skipOwn makes pulls skip the device's own log entries but count them
	// against the page, as the real server once did: pages then come back
	// empty, marked more, with the cursor moving.
	skipOwn bool
}

// purge erases a record: gone from the server, and devices are told.
func (f *fakeServer) purge(ref Ref) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.records, ref)
	if f.purges == nil {
		f.purges = map[int]Ref{}
	}
	f.purges[len(f.log)] = ref
	f.log = append(f.log, api.PulledChange{Author: "purge"})
}

func newFakeServer(t *testing.T) *fakeServer {
	f := &fakeServer{
		t:       t,
		clock:   crdt.NewClock(time.Now, time.Minute),
		hwm:     map[crdt.ReplicaID]uint64{},
		records: map[Ref]*crdt.Record{},
		access:  map[string]string{},
		refresh: map[string]string{},
		spent:   map[string]bool{},
		revoked: map[string]bool{},
		expired: map[string]bool{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/auth/login", f.login)
	mux.HandleFunc("POST /v1/auth/refresh", f.refreshTok)
	mux.HandleFunc("POST /v1/sync", f.sync)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) problemJSON(w http.ResponseWriter, code api.Code) {
	w.Header().Set("Content-Type", api.ProblemContentType)
	w.WriteHeader(code.Status())
	json.NewEncoder(w).Encode(api.NewProblem(code, "fake"))
}

func (f *fakeServer) problemMsgpack(w http.ResponseWriter, code api.Code) {
	w.Header().Set("Content-Type", api.ProblemMsgpackContentType)
	w.WriteHeader(code.Status())
	b, _ := msgpack.Marshal(api.NewProblem(code, "fake"))
	w.Write(b)
}

func (f *fakeServer) issue(device string) api.TokenResponse {
	f.n++
	a, r := fmt.Sprintf("a%d", f.n), fmt.Sprintf("r%d", f.n)
	f.access[a] = device
	f.refresh[r] = device
	return api.TokenResponse{AccessToken: a, RefreshToken: r, TokenType: "Bearer", ExpiresIn: 300,
		User: api.User{ID: "u-" + device[:4], Name: "Worker", Role: api.RoleLinkWorker, Teams: []string{"wigan"}}}
}

func (f *fakeServer) login(w http.ResponseWriter, r *http.Request) {
	var req api.LoginRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Password != "pw" {
		f.problemJSON(w, api.CodeInvalidCredentials)
		return
	}
	f.mu.Lock()
	delete(f.revoked, req.DeviceID)
	tr := f.issue(req.DeviceID)
	f.mu.Unlock()
	json.NewEncoder(w).Encode(tr)
}

func (f *fakeServer) refreshTok(w http.ResponseWriter, r *http.Request) {
	var req api.RefreshRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		f.problemJSON(w, api.CodeMalformedBody)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	dev, ok := f.refresh[req.RefreshToken]
	switch {
	case f.spent[req.RefreshToken]:
		f.revoked[req.DeviceID] = true
		f.problemJSON(w, api.CodeRefreshReused)
		return
	case !ok:
		f.problemJSON(w, api.CodeUnauthorized)
		return
	case f.revoked[dev]:
		f.problemJSON(w, api.CodeDeviceRevoked)
		return
	}
	delete(f.refresh, req.RefreshToken)
	f.spent[req.RefreshToken] = true
	json.NewEncoder(w).Encode(f.issue(dev))
}

// expireAll makes every access token issued so far expired.
func (f *fakeServer) expireAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for a := range f.access {
		f.expired[a] = true
	}
}

func (f *fakeServer) revoke(device string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked[device] = true
}

func (f *fakeServer) sync(w http.ResponseWriter, r *http.Request) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			f.problemMsgpack(w, api.CodeMalformedBody)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(io.LimitReader(body, 32<<20))
	if err != nil {
		f.problemMsgpack(w, api.CodeMalformedBody)
		return
	}
	var req api.SyncRequest
	if err := msgpack.Unmarshal(raw, &req); err != nil {
		f.problemMsgpack(w, api.CodeMalformedBody)
		return
	}
	f.mu.Lock()
	slow := f.slowAbove > 0 && req.PullLimit > f.slowAbove
	f.mu.Unlock()
	if slow {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	}
	f.mu.Lock()
	dev, ok := f.access[tok]
	switch {
	case !ok:
		f.mu.Unlock()
		f.problemMsgpack(w, api.CodeUnauthorized)
		return
	case f.revoked[dev]:
		f.mu.Unlock()
		f.problemMsgpack(w, api.CodeDeviceRevoked)
		return
	case f.expired[tok]:
		f.mu.Unlock()
		f.problemMsgpack(w, api.CodeTokenExpired)
		return
	case dev != req.Replica.String():
		f.mu.Unlock()
		f.problemMsgpack(w, api.CodeDeviceMismatch)
		return
	}
	_ = f.clock.Update(req.Clock)
	resp := api.SyncResponse{Protocol: api.ProtocolVersion}
	for _, c := range req.Changes {
		hwm := f.hwm[req.Replica]
		switch {
		case c.Seq <= hwm:
			resp.Results = append(resp.Results, api.ChangeResult{Seq: c.Seq, Status: api.ChangeDuplicate})
		case c.Seq != hwm+1:
			resp.Results = append(resp.Results, api.ChangeResult{Seq: c.Seq, Status: api.ChangeRefused, Code: api.CodeSeqGap, Expected: hwm + 1})
		default:
			res := api.ChangeResult{Seq: c.Seq, Status: api.ChangeApplied}
			var kept []crdt.Op
			for i, op := range c.Ops {
				if op.Field == "quarantine_me" {
					res.Ops = append(res.Ops, api.OpResult{Index: i, Code: api.CodeInvalidValue, Detail: "fake quarantine", Quarantined: true})
					continue
				}
				ref := Ref{Team: op.Team, Collection: op.Collection, ID: op.Record}
				rec := f.records[ref]
				if rec == nil {
					rec = crdt.NewRecord(op.Team, op.Collection, op.Record)
					f.records[ref] = rec
				}
				if err := rec.Apply(&op); err != nil {
					f.t.Errorf("fake server: apply: %v", err)
				}
				kept = append(kept, op)
			}
			f.hwm[req.Replica] = c.Seq
			f.applied++
			if len(kept) > 0 {
				f.log = append(f.log, api.PulledChange{Author: dev, Ops: crdt.NewOpsBytes(kept)})
			}
			resp.Results = append(resp.Results, res)
		}
	}
	limit := req.PullLimit
	if limit <= 0 || limit > 100 {
		limit = 100
	}
	if len(req.Cursor) == 0 {
		for _, rec := range f.records {
			b, err := crdt.MarshalRecord(rec)
			if err != nil {
				f.mu.Unlock()
				f.problemMsgpack(w, api.CodeInternal)
				return
			}
			resp.Snapshot = append(resp.Snapshot, b)
		}
		resp.Cursor = binary.BigEndian.AppendUint64(nil, uint64(len(f.log)))
	} else {
		pos := int(binary.BigEndian.Uint64(req.Cursor))
		end := min(pos+limit, len(f.log))
		for i := pos; i < end; i++ {
			if f.skipOwn && f.log[i].Author == dev {
				continue
			}
			if ref, ok := f.purges[i]; ok {
				resp.Purged = append(resp.Purged, ref)
				continue
			}
			resp.Changes = append(resp.Changes, f.log[i])
		}
		resp.More = end < len(f.log)
		resp.Cursor = binary.BigEndian.AppendUint64(nil, uint64(end))
	}
	resp.Clock = f.clock.Now()
	drop := f.dropNext > 0
	if drop {
		f.dropNext--
	}
	b, err := msgpack.Marshal(&resp)
	f.mu.Unlock()
	if err != nil {
		f.t.Errorf("fake server: encode: %v", err)
	}
	if drop {
		// The server has committed; the reply is cut in half.
		w.Header().Set("Content-Type", api.ContentType)
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Write(b[:len(b)/2])
		if hj, ok := w.(http.Hijacker); ok {
			conn, _, err := hj.Hijack()
			if err == nil {
				conn.Close()
			}
		}
		return
	}
	w.Header().Set("Content-Type", api.ContentType)
	w.Write(b)
}

func (f *fakeServer) state(ref Ref) *crdt.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.records[ref]; r != nil {
		return r.Clone()
	}
	return nil
}

func (f *fakeServer) stats() (applied, logLen int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.log {
		n += c.Ops.Len()
	}
	return f.applied, n
}
