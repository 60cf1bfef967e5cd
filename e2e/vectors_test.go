package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	v "github.com/doorstep-health/doorstep/internal/vectors"
	"github.com/doorstep-health/doorstep/server"
	"golang.org/x/crypto/bcrypt"
)

var updateVectors = flag.Bool("update", false, "rewrite the expected replies in api/testdata/transcript.json from a real server")

type transcriptReply struct {
	R []v.Result    `json:"r,omitempty"`
	B []snapshotRec `json:"b,omitempty"`
	C []v.Pulled    `json:"c,omitempty"`
	X []v.Ref       `json:"x,omitempty"`
	M bool          `json:"m,omitempty"`
}

type snapshotRec struct {
	Ref  v.Ref        `json:"ref"`
	View v.RecordView `json:"view"`
}

type transcriptStep struct {
	Name      string           `json:"name"`
	Device    string           `json:"device"`
	Cursor    string           `json:"cursor"`
	DropReply bool             `json:"drop_reply,omitempty"`
	Changes   []v.Change       `json:"changes,omitempty"`
	Want      *transcriptReply `json:"want"`
}

// TestVectorsTranscript replays api/testdata/transcript.json against a real
// server on loopback (real Badger, real HTTP, real msgpack) and checks
// every reply against the file: a push whose reply is lost, the retry,
// bootstraps, pulls, a seq gap, a refused op, a conflict and its
// settlement.
func TestVectorsTranscript(t *testing.T) {
	const path = "../api/testdata/transcript.json"
	var f struct {
		About        string            `json:"about"`
		Replicas     v.Replicas        `json:"replicas"`
		Users        map[string]string `json:"users"`
		ServerWallMS int64             `json:"server_wall_ms"`
		Steps        []transcriptStep  `json:"steps"`
	}
	if err := v.Read(path, &f); err != nil {
		t.Fatal(err)
	}
	wall := time.UnixMilli(f.ServerWallMS)
	srv, err := server.New(context.Background(), server.Config{
		DataDir: t.TempDir(), BcryptCost: bcrypt.MinCost, SmallMemory: true, DeviceRate: -1, AuthRate: -1,
		Now: func() time.Time { return wall }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(openAPIChecked(t, srv.Handler()))
	e := &env{t: t, srv: srv, ts: ts, users: map[string]string{}}
	defer func() { ts.Close(); srv.Shutdown(context.Background()) }()
	ctx := context.Background()
	if _, err := srv.Auth().CreateTeam(ctx, "wigan", "Wigan Frailty"); err != nil {
		t.Fatal(err)
	}
	names := map[string]string{} // user ID → username
	tokens := map[string]string{}
	cursors := map[string][]byte{}
	for dev, user := range f.Users {
		u, err := srv.Auth().CreateUser(ctx, auth.NewUser{Username: user, Name: user, Password: password, Role: api.RoleLinkWorker, Teams: []string{"wigan"}})
		if err != nil {
			t.Fatal(err)
		}
		names[u.ID] = user
		var tr api.TokenResponse
		rid, err := f.Replicas.ID(dev)
		if err != nil {
			t.Fatal(err)
		}
		if st, p := e.doJSON(http.MethodPost, "/v1/auth/login", "", api.LoginRequest{Username: user, Password: password, DeviceID: rid.String()}, &tr); st != http.StatusOK {
			t.Fatalf("login %s: %d %+v", user, st, p)
		}
		tokens[dev] = tr.AccessToken
	}
	for i := range f.Steps {
		s := &f.Steps[i]
		rid, err := f.Replicas.ID(s.Device)
		if err != nil {
			t.Fatal(err)
		}
		changes, err := v.Changes(s.Changes, f.Replicas)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		req := &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: rid, Clock: wallTS(wall).Timestamp(), Changes: changes}
		switch s.Cursor {
		case "none":
		case "last":
			req.Cursor = cursors[s.Device]
		default:
			t.Fatalf("%s: cursor %q", s.Name, s.Cursor)
		}
		st, resp, p := e.postSync(tokens[s.Device], encode(t, req), nil)
		if st != http.StatusOK {
			t.Fatalf("step %d %q: %d %+v", i+1, s.Name, st, p)
		}
		if !s.DropReply {
			cursors[s.Device] = resp.Cursor
		}
		got, err := replyOf(resp, f.Replicas, names)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if *updateVectors {
			s.Want = got
			continue
		}
		if !v.Same(s.Want, got) {
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(s.Want)
			t.Errorf("step %d %q: the server replied\n  %s\nthe transcript says\n  %s", i+1, s.Name, gj, wj)
		}
	}
	if *updateVectors {
		if err := v.Write(path, &f); err != nil {
			t.Fatal(err)
		}
	}
}

func wallTS(t time.Time) (ts v.TS) { return v.TS{uint64(t.UnixMilli()), 0} }

func replyOf(resp *api.SyncResponse, r v.Replicas, names map[string]string) (*transcriptReply, error) {
	out := &transcriptReply{R: v.ResultsOf(resp.Results), M: resp.More}
	for i := range out.R { // details are for people, not compared
		for j := range out.R[i].O {
			out.R[i].O[j].D = ""
		}
	}
	for _, raw := range resp.Snapshot {
		rec, err := raw.Record()
		if err != nil {
			return nil, err
		}
		view, err := v.ViewOf(rec, r)
		if err != nil {
			return nil, err
		}
		out.B = append(out.B, snapshotRec{Ref: v.Ref{T: rec.Team, C: rec.Collection, R: rec.ID}, View: view})
	}
	for _, c := range resp.Changes {
		ops, err := c.Ops.Ops()
		if err != nil {
			return nil, err
		}
		pc := v.Pulled{A: names[c.Author]}
		if pc.A == "" {
			return nil, fmt.Errorf("pulled change by unknown user %q", c.Author)
		}
		for i := range ops {
			o, err := v.OpOf(&ops[i], r)
			if err != nil {
				return nil, err
			}
			pc.O = append(pc.O, o)
		}
		out.C = append(out.C, pc)
	}
	for _, x := range resp.Purged {
		out.X = append(out.X, v.Ref{T: x.Team, C: x.Collection, R: x.ID})
	}
	return out, nil
}
