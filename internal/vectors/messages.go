package vectors

import (
	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// The JSON forms of the sync messages, with their wire keys
// (docs/PROTOCOL.md §3).
type (
	// Change is an api.Change.
	Change struct {
		S uint64 `json:"s"`
		O []Op   `json:"o"`
	}
	// Request is an api.SyncRequest.
	Request struct {
		V int      `json:"v"`
		D string   `json:"d"`
		H TS       `json:"h"`
		S int      `json:"s,omitempty"`
		C []Change `json:"c,omitempty"`
		K Hex      `json:"k,omitempty"`
		L int      `json:"l,omitempty"`
	}
	// OpResult is an api.OpResult.
	OpResult struct {
		I int    `json:"i"`
		E string `json:"e"`
		D string `json:"d,omitempty"`
		Q bool   `json:"q,omitempty"`
	}
	// Result is an api.ChangeResult.
	Result struct {
		S uint64     `json:"s"`
		T uint8      `json:"t"`
		E string     `json:"e,omitempty"`
		X uint64     `json:"x,omitempty"`
		O []OpResult `json:"o,omitempty"`
	}
	// Ref is an api.RecordRef with its wire keys.
	Ref struct {
		T string `json:"t"`
		C string `json:"c"`
		R string `json:"r"`
	}
	// Pulled is an api.PulledChange.
	Pulled struct {
		A string `json:"a"`
		O []Op   `json:"o"`
	}
	// Response is an api.SyncResponse without its snapshot (records.json
	// covers record encodings).
	Response struct {
		V int      `json:"v"`
		H TS       `json:"h"`
		R []Result `json:"r,omitempty"`
		C []Pulled `json:"c,omitempty"`
		X []Ref    `json:"x,omitempty"`
		K Hex      `json:"k"`
		M bool     `json:"m,omitempty"`
	}
)

// Changes converts a list of changes.
func Changes(list []Change, r Replicas) ([]api.Change, error) {
	var out []api.Change
	for _, c := range list {
		ops, err := Ops(c.O, r)
		if err != nil {
			return nil, err
		}
		out = append(out, api.Change{Seq: c.S, Ops: ops})
	}
	return out, nil
}

// Build converts j.
func (j Request) Build(r Replicas) (*api.SyncRequest, error) {
	d, err := r.ID(j.D)
	if err != nil {
		return nil, err
	}
	req := &api.SyncRequest{Protocol: j.V, Replica: d, Clock: j.H.Timestamp(), Schema: j.S, PullLimit: j.L}
	if len(j.K) > 0 {
		req.Cursor = j.K
	}
	if req.Changes, err = Changes(j.C, r); err != nil {
		return nil, err
	}
	return req, nil
}

// ResultsOf is the JSON form of change results.
func ResultsOf(rs []api.ChangeResult) []Result {
	var out []Result
	for _, res := range rs {
		jr := Result{S: res.Seq, T: uint8(res.Status), E: string(res.Code), X: res.Expected}
		for _, o := range res.Ops {
			jr.O = append(jr.O, OpResult{I: o.Index, E: string(o.Code), D: o.Detail, Q: o.Quarantined})
		}
		out = append(out, jr)
	}
	return out
}

// Build converts j.
func (j Response) Build(r Replicas) (*api.SyncResponse, error) {
	resp := &api.SyncResponse{Protocol: j.V, Clock: j.H.Timestamp(), Cursor: j.K, More: j.M}
	for _, x := range j.X {
		resp.Purged = append(resp.Purged, api.RecordRef{Team: x.T, Collection: x.C, ID: x.R})
	}
	for _, res := range j.R {
		cr := api.ChangeResult{Seq: res.S, Status: api.ChangeStatus(res.T), Code: api.Code(res.E), Expected: res.X}
		for _, o := range res.O {
			cr.Ops = append(cr.Ops, api.OpResult{Index: o.I, Code: api.Code(o.E), Detail: o.D, Quarantined: o.Q})
		}
		resp.Results = append(resp.Results, cr)
	}
	for _, c := range j.C {
		ops, err := Ops(c.O, r)
		if err != nil {
			return nil, err
		}
		resp.Changes = append(resp.Changes, api.PulledChange{Author: c.A, Ops: crdt.NewOpsBytes(ops)})
	}
	return resp, nil
}
