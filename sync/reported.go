package sync

import (
	"errors"
	"fmt"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// reportedResult is one change's ops not merged, as kept under
// store.OpResultsKey: enough to tell the device again, nothing of the ops.
type reportedResult struct {
	Seq uint64            `msgpack:"s"`
	Ops []reportedOpEntry `msgpack:"o"`
}

// reportedOpEntry is a run of ops not merged: Index, and the Run−1 ops
// after it (Run 0 or 1 means the one op), all with Code and Quarantined.
// Runs keep a flood of ops refused for one reason to a few bytes, so that
// the refused ops of a push are never stored one by one (issue 9).
type reportedOpEntry struct {
	Index       int      `msgpack:"i"`
	Code        api.Code `msgpack:"e"`
	Quarantined bool     `msgpack:"q,omitempty"`
	Run         int      `msgpack:"n,omitempty"`
}

// reported returns the op results the server gave for seq of replica in
// its last push with ops not merged, if seq was in it, for a change now
// pushed again as a duplicate: a device whose reply was lost learns of its
// refused ops (and gets their records restated) all the same.
func (t *txnState) reported(replica crdt.ReplicaID, seq uint64) ([]api.OpResult, error) {
	if t.opres == nil {
		t.opres = map[crdt.ReplicaID][]reportedResult{}
	}
	rs, ok := t.opres[replica]
	if !ok {
		val, err := t.txn.Get(store.OpResultsKey(replica))
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("read op results: %w", err)
		default:
			if err := store.Decode(val, &rs); err != nil {
				return nil, fmt.Errorf("read op results: %w", err)
			}
		}
		t.opres[replica] = rs
	}
	for _, r := range rs {
		if r.Seq != seq {
			continue
		}
		var out []api.OpResult
		for _, o := range r.Ops {
			for k := range max(o.Run, 1) {
				out = append(out, api.OpResult{Index: o.Index + k, Code: o.Code, Quarantined: o.Quarantined,
					Detail: "reported again (the reply to the first push of this change was lost)"})
			}
		}
		return out, nil
	}
	return nil, nil
}

// keepReported stores the op results of one push, if any op was not
// merged, for reported.
func (t *txnState) keepReported(replica crdt.ReplicaID, results []api.ChangeResult) error {
	var rs []reportedResult
	for _, r := range results {
		if len(r.Ops) == 0 || (r.Status != api.ChangeApplied && r.Status != api.ChangeDuplicate) {
			continue
		}
		rr := reportedResult{Seq: r.Seq}
		for _, o := range r.Ops {
			if n := len(rr.Ops); n > 0 {
				last := &rr.Ops[n-1]
				if last.Code == o.Code && last.Quarantined == o.Quarantined && last.Index+max(last.Run, 1) == o.Index {
					last.Run = max(last.Run, 1) + 1
					continue
				}
			}
			rr.Ops = append(rr.Ops, reportedOpEntry{Index: o.Index, Code: o.Code, Quarantined: o.Quarantined})
		}
		rs = append(rs, rr)
	}
	if len(rs) == 0 {
		return nil
	}
	v, err := store.Encode(rs)
	if err != nil {
		return err
	}
	if t.opres == nil {
		t.opres = map[crdt.ReplicaID][]reportedResult{}
	}
	t.opres[replica] = rs
	return t.set(store.OpResultsKey(replica), v)
}
