package client

// Cheap retries after a lost reply. Every sync reply names the server's
// high-water seq for this replica (api.SyncResponse.HighWater). When a
// request that pushed changes gets no reply, the server may or may not have
// applied them; rather than upload the whole push again, the next request
// pushes nothing and learns the high-water, and the one after sends the
// changes the server already holds only as empty stubs (seq, no ops),
// which it acknowledges as duplicates with the op results it kept, and the
// rest in full.
//
// Safe because a stub is only ever sent for a seq at or below a high-water
// the server reported in this process: the server never applies a stub
// (it applies seq high-water + 1 only), and a server restored from a backup
// since then has a new epoch and applies nothing from a request of the old
// one (epoch.go).

import (
	"bytes"
	"errors"

	"github.com/doorstep-health/doorstep/api"
)

// highWater is the replica's view of the server's high-water seq. It lives
// in memory only: after a restart the first push goes in full, as before.
type highWater struct {
	// probe is set when a request that pushed changes got no reply: the
	// next request pushes nothing, to learn the high-water first.
	probe bool
	// known is the high-water of the last reply (0: none, or a server
	// that does not report it), and epoch the server epoch it holds in: a
	// stub goes only to a request of the same epoch.
	known uint64
	epoch []byte
	// full holds seqs to send in full although at or below known: the
	// server refused one of their ops by a clinical rule, and only a full
	// copy brings back the record states to show (api.SyncResponse.Replace).
	full map[uint64]bool
}

// pushPlan returns the changes the next request stands for (what the
// reply's results are matched against): none at all while probing, else
// all of them.
func (r *Replica) pushPlan(changes []pushChange) []pushChange {
	if r.hw.probe {
		return nil
	}
	return changes
}

// stubHeld returns the changes to put on the wire for a request in epoch:
// those at or below the high-water the server reported in the same epoch
// as stubs, the rest in full. changes is not modified.
func (r *Replica) stubHeld(changes []pushChange, epoch []byte) []pushChange {
	if len(changes) == 0 || r.hw.known == 0 || changes[0].Seq > r.hw.known || !bytes.Equal(epoch, r.hw.epoch) {
		return changes
	}
	wire := make([]pushChange, len(changes))
	for i, c := range changes {
		wire[i] = c
		if c.Seq <= r.hw.known && !r.hw.full[c.Seq] {
			wire[i] = pushChange{Seq: c.Seq}
		}
	}
	return wire
}

// noteAttempt records how a request that pushed wire went: a failure that
// may have reached the server makes the next request a probe; a reply
// teaches the high-water. Stubbed changes whose results need the full
// change again (see highWater.full) have their result removed from resp,
// so that they stay in the outbox for the next request.
func (r *Replica) noteAttempt(wire []pushChange, resp *api.SyncResponse, err error) {
	if err != nil {
		var p *api.Problem
		if len(wire) > 0 && (!errors.As(err, &p) || p.Status >= 500) {
			r.hw.probe = true
		}
		return
	}
	r.hw.probe = false
	r.hw.known, r.hw.epoch = resp.HighWater, bytes.Clone(resp.Epoch)
	stub := map[uint64]bool{}
	for _, c := range wire {
		if c.n == 0 {
			stub[c.Seq] = true
		}
	}
	if len(stub) == 0 {
		return
	}
	kept := resp.Results[:0:0]
	for _, cr := range resp.Results {
		if stub[cr.Seq] && needsReplace(cr) {
			if r.hw.full == nil {
				r.hw.full = map[uint64]bool{}
			}
			r.hw.full[cr.Seq] = true
			continue
		}
		kept = append(kept, cr)
	}
	resp.Results = kept
}

// needsReplace reports whether the server refused an op of cr by a
// clinical rule, which it answers with the record's state only when it
// sees the op itself.
func needsReplace(cr api.ChangeResult) bool {
	for _, o := range cr.Ops {
		if o.Code == api.CodeResolveForbidden || o.Code == api.CodeConflictInReview {
			return true
		}
	}
	return false
}
