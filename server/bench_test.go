package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	dsync "github.com/doorstep-health/doorstep/sync"
	"github.com/vmihailenco/msgpack/v5"
)

// BenchmarkReconnect measures the server's cost of a typical reconnect
// through the full handler stack (auth, limits, decode, engine with durable
// commit, encode), without the network: the device pushes one change of
// 500 ops and pulls the 2,000 ops a colleague pushed while it was away.
func BenchmarkReconnect(b *testing.B) { reconnectBench(b, false) }

// BenchmarkReconnectPacked is BenchmarkReconnect with the push and the
// pulled changes in the packed encoding (docs/PROTOCOL.md "Packed pull
// encoding"): the device packs its push and unpacks the reply inside the
// timed part, as a device would.
func BenchmarkReconnectPacked(b *testing.B) { reconnectBench(b, true) }

func reconnectBench(b *testing.B, packed bool) {
	ctx := context.Background()
	s := newTestServer(b, func(c *Config) { c.DeviceRate = -1 })
	if _, err := s.auth.CreateTeam(ctx, "wigan", "Wigan"); err != nil {
		b.Fatal(err)
	}
	login := func(name string) (*api.TokenResponse, crdt.ReplicaID, string) {
		u, err := s.auth.CreateUser(ctx, auth.NewUser{Username: name, Password: "long enough", Role: api.RoleLinkWorker, Teams: []string{"wigan"}})
		if err != nil {
			b.Fatal(err)
		}
		id := crdt.NewReplicaID()
		tr, err := s.auth.Login(ctx, name, "long enough", id.String(), name)
		if err != nil {
			b.Fatal(err)
		}
		return tr, id, u.ID
	}
	tr, dev, _ := login("ann")
	_, other, otherUser := login("bea")
	annClock, beaClock := crdt.NewClock(time.Now, time.Minute), crdt.NewClock(time.Now, time.Minute)
	var annSeq, beaSeq uint64
	var cursor []byte
	mkOps := func(clock *crdt.Clock, r crdt.ReplicaID, prefix string, n int) []crdt.Op {
		ops := make([]crdt.Op, n)
		for i := range ops {
			ops[i] = crdt.Op{ID: crdt.OpID{Time: clock.Now(), Replica: r}, Team: "wigan", Collection: "people",
				Record: fmt.Sprintf("%s-p%d", prefix, i/10), Field: []string{"given_name", "family_name", "preferred_name", "phone", "email",
					"preferred_language", "temporary_address", "communication_needs", "household_notes", "risk_notes"}[i%10],
				Kind: crdt.KindWrite, Value: crdt.MustValue(fmt.Sprintf("value %d", i))}
		}
		return ops
	}
	sync := func(req *api.SyncRequest) *api.SyncResponse {
		if packed {
			req.PullEncoding = api.PullEncodingPacked
			for _, c := range req.Changes {
				blk, err := api.PackPush([]api.Change{c})
				if err != nil {
					b.Fatal(err)
				}
				req.Packed = append(req.Packed, blk)
			}
			req.Changes = nil
		}
		body, err := msgpack.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		hr := httptest.NewRequest(http.MethodPost, "/v1/sync", bytes.NewReader(body))
		hr.Header.Set("Content-Type", api.ContentType)
		hr.Header.Set("Authorization", "Bearer "+tr.AccessToken)
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, hr)
		if w.Code != http.StatusOK {
			b.Fatalf("sync: %d %x", w.Code, w.Body.Bytes())
		}
		var resp api.SyncResponse
		if err := msgpack.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			b.Fatal(err)
		}
		if len(resp.Packed) > 0 {
			if resp.Changes, err = api.UnpackChanges(resp.Packed); err != nil {
				b.Fatal(err)
			}
		}
		// Pulled ops arrive as raw bytes: decode them as a device does, so
		// the time still includes decoding the reply whole.
		for _, c := range resp.Changes {
			if _, err := c.Ops.Ops(); err != nil {
				b.Fatal(err)
			}
		}
		return &resp
	}
	// Bootstrap ann.
	for more := true; more; {
		resp := sync(&api.SyncRequest{Protocol: api.ProtocolVersion, Replica: dev, Clock: annClock.Now(), Cursor: cursor})
		cursor, more = resp.Cursor, resp.More
	}
	beaCaller := dsync.Caller{User: otherUser, Replica: other, Teams: []string{"wigan"}}
	var pulled int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// While ann was away, bea pushed 2,000 ops in four changes.
		for j := 0; j < 4; j++ {
			beaSeq++
			if _, err := s.engine.Push(ctx, beaCaller, []api.Change{{Seq: beaSeq, Ops: mkOps(beaClock, other, fmt.Sprintf("b%d-%d", i, j), 500)}}); err != nil {
				b.Fatal(err)
			}
		}
		annSeq++
		req := &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: dev, Clock: annClock.Now(), Cursor: cursor, PullLimit: 2000,
			Changes: []api.Change{{Seq: annSeq, Ops: mkOps(annClock, dev, fmt.Sprintf("a%d", i), 500)}}}
		b.StartTimer()
		resp := sync(req)
		b.StopTimer()
		if resp.Results[0].Status != api.ChangeApplied {
			b.Fatalf("push: %+v", resp.Results)
		}
		cursor = resp.Cursor
		for _, c := range resp.Changes {
			pulled += c.Ops.Len()
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(pulled)/float64(b.N), "pulled/op")
}
