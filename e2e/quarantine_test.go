package e2e

import (
	"fmt"
	"net/http"
	gosync "sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
)

type testClock struct {
	mu gosync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestQuarantineAndReapply(t *testing.T) {
	clk := &testClock{t: time.Now()}
	e := newEnv(t, func(c *server.Config) { c.Now = clk.Now; c.AccessTTL = 24 * time.Hour })
	ann, dan, cat := e.login("ann"), e.login("dan"), e.login("cat")
	ann.sync()
	// An op stamped an hour ahead of the server, and one with a value the
	// schema refuses (CFS runs 1–9).
	rec := ann.rec("wigan", "people", "p1")
	future := rec.Write(crdt.OpID{Time: crdt.MakeTimestamp(clk.Now().Add(time.Hour).UnixMilli(), 0), Replica: ann.id}, "given_name", crdt.MustValue("Edna"))
	bad := ann.write("wigan", "people", "p1", "cfs", 42)
	resp := ann.sync(ann.change(bad, future))
	r := resp.Results[0]
	if r.Status != api.ChangeApplied || len(r.Ops) != 2 {
		t.Fatalf("results %+v", resp.Results)
	}
	codes := map[api.Code]bool{}
	for _, o := range r.Ops {
		codes[o.Code] = o.Quarantined
	}
	if !codes[api.CodeInvalidValue] || !codes[api.CodeClockSkew] {
		t.Fatalf("op results %+v", r.Ops)
	}
	var q struct{ Ops []server.QuarantineEntry }
	if st, p := e.doJSON(http.MethodGet, "/v1/admin/quarantine", dan.access, nil, &q); st != http.StatusOK {
		t.Fatalf("quarantine: %d %+v", st, p)
	}
	if len(q.Ops) != 2 {
		t.Fatalf("quarantine %+v", q)
	}
	var skewID, badID uint64
	for _, o := range q.Ops {
		if o.Author != e.users["ann"] || o.Device != ann.id.String() || o.Op.Record != "p1" {
			t.Errorf("entry %+v", o)
		}
		switch o.Code {
		case api.CodeClockSkew:
			skewID = o.ID
		case api.CodeInvalidValue:
			badID = o.ID
		}
	}
	// Still invalid: refused.
	if st, p := e.doJSON(http.MethodPost, fmt.Sprintf("/v1/admin/quarantine/%d/reapply", badID), dan.access, nil, nil); st != http.StatusBadRequest {
		t.Fatalf("reapply invalid: %d %+v", st, p)
	}
	// Once the server's clock has caught up, the skewed op applies.
	clk.Add(2 * time.Hour)
	if st, p := e.doJSON(http.MethodPost, fmt.Sprintf("/v1/admin/quarantine/%d/reapply", skewID), dan.access, nil, nil); st != http.StatusOK {
		t.Fatalf("reapply skewed: %d %+v", st, p)
	}
	var got server.RecordJSON
	if st, p := e.doJSON(http.MethodGet, "/v1/teams/wigan/records/people/p1", cat.access, nil, &got); st != http.StatusOK {
		t.Fatalf("record: %d %+v", st, p)
	}
	if f := got.Fields["given_name"]; f == nil || f.Value != "Edna" {
		t.Fatalf("given_name after reapply: %+v", f)
	}
	if st, p := e.doJSON(http.MethodPost, "/v1/admin/quarantine/999999/reapply", dan.access, nil, nil); st != http.StatusNotFound {
		t.Fatalf("reapply unknown: %d %+v", st, p)
	}
}
