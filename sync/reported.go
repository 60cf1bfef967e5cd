package sync

import (
	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// reported returns the op results the server gave for seq of replica in
// its last push with ops not merged, if seq was in it, for a change now
// pushed again as a duplicate: a device whose reply was lost learns of its
// refused ops (and gets their records restated) all the same.
func (t *txnState) reported(replica crdt.ReplicaID, seq uint64) ([]api.OpResult, error) {
	if t.opres == nil {
		t.opres = map[crdt.ReplicaID][]store.ReportedChange{}
	}
	rs, ok := t.opres[replica]
	if !ok {
		var err error
		if rs, err = store.GetReported(t.txn, replica); err != nil {
			return nil, err
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
				out = append(out, api.OpResult{Index: o.Index + k, Code: api.Code(o.Code), Quarantined: o.Quarantined,
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
	var rs []store.ReportedChange
	for _, r := range results {
		if len(r.Ops) == 0 || (r.Status != api.ChangeApplied && r.Status != api.ChangeDuplicate) {
			continue
		}
		rr := store.ReportedChange{Seq: r.Seq}
		for _, o := range r.Ops {
			if n := len(rr.Ops); n > 0 {
				last := &rr.Ops[n-1]
				if last.Code == string(o.Code) && last.Quarantined == o.Quarantined && last.Index+max(last.Run, 1) == o.Index {
					last.Run = max(last.Run, 1) + 1
					continue
				}
			}
			rr.Ops = append(rr.Ops, store.ReportedRun{Index: o.Index, Code: string(o.Code), Quarantined: o.Quarantined})
		}
		rs = append(rs, rr)
	}
	if len(rs) == 0 {
		return nil
	}
	if t.opres == nil {
		t.opres = map[crdt.ReplicaID][]store.ReportedChange{}
	}
	t.opres[replica] = rs
	return store.PutReported(t.txn, replica, rs)
}
