package sync

// The push admission as it was before issue 17's third pass (i17-commit3),
// kept verbatim as a reference: TestAdmitMatchesReference decides random
// pushes with both and with the engine and requires the same results,
// states and log entries. Only the names differ (…Ref, refChangeView).

import (
	"errors"
	"fmt"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

type refChangeView struct {
	admissionView
	owners  map[[2]string]string
	sizes   map[recRef]*recSize
	usage   map[string]*store.QuarantineUsage
	batches map[recRef]*crdt.Batch
	order   []recRef // batch keys in first-use order
}

func (v *refChangeView) Owner(collection, id string) (string, error) {
	if team, ok := v.owners[[2]string{collection, id}]; ok {
		return team, nil
	}
	return v.admissionView.Owner(collection, id)
}

func (v *refChangeView) claim(op *crdt.Op) {
	if v.owners == nil {
		v.owners = map[[2]string]string{}
	}
	v.owners[[2]string{op.Collection, op.Record}] = op.Team
}

func (v *refChangeView) size(op *crdt.Op) (*recSize, error) {
	k := refOf(op)
	if s, ok := v.sizes[k]; ok {
		return s, nil
	}
	s, err := v.Size(op.Team, op.Collection, op.Record)
	if err != nil {
		return nil, err
	}
	s = s.clone()
	if v.sizes == nil {
		v.sizes = map[recRef]*recSize{}
	}
	v.sizes[k] = &s
	return &s, nil
}

func (v *refChangeView) batch(op *crdt.Op, rec *crdt.Record) *crdt.Batch {
	k := refOf(op)
	if b, ok := v.batches[k]; ok {
		return b
	}
	if v.batches == nil {
		v.batches = map[recRef]*crdt.Batch{}
	}
	b := crdt.NewBatch(rec)
	v.batches[k] = b
	v.order = append(v.order, k)
	return b
}

// usageOf returns the quota counter of a device (team "") or of a team,
// as this change has used it so far.
func (v *refChangeView) usageOf(replica crdt.ReplicaID, team string, isTeam bool) (*store.QuarantineUsage, error) {
	key := string(store.QuarantineDeviceKey(replica))
	if isTeam {
		key = string(store.QuarantineTeamKey(team))
	}
	if u, ok := v.usage[key]; ok {
		return u, nil
	}
	var u store.QuarantineUsage
	var err error
	if isTeam {
		u, err = v.TeamUsage(team)
	} else {
		u, err = v.DeviceUsage(replica)
	}
	if err != nil {
		return nil, err
	}
	if v.usage == nil {
		v.usage = map[string]*store.QuarantineUsage{}
	}
	v.usage[key] = &u
	return &u, nil
}

func (a *admission) fitQuarantineRef(v *refChangeView, q store.QuarantineEntry) (*quarantineWrite, error) {
	b := a.bounds
	q.ReceivedMS = a.now.UnixMilli()
	val, err := store.Encode(&q)
	if err != nil {
		return nil, err
	}
	q.Charged = uint64(len(val))
	dev, err := v.usageOf(q.Replica, "", false)
	if err != nil {
		return nil, err
	}
	if !usageFits(*dev, len(val), b.QuarantineDeviceEntries, b.QuarantineDeviceBytes) {
		return nil, nil
	}
	var team *store.QuarantineUsage
	if q.Reapplicable {
		if team, err = v.usageOf(q.Replica, q.Op.Team, true); err != nil {
			return nil, err
		}
		if !usageFits(*team, len(val), b.QuarantineTeamEntries, b.QuarantineTeamBytes) {
			return nil, nil
		}
	}
	if val, err = store.Encode(&q); err != nil { // now with Charged
		return nil, err
	}
	usageAdd(dev, q.Charged)
	if team != nil {
		usageAdd(team, q.Charged)
	}
	return &quarantineWrite{entry: q, value: val}, nil
}

func (a *admission) admitChangeRef(v admissionView, c *Caller, ch *api.Change, pre []*refusal, val []error) (changeDecision, error) {
	d := changeDecision{result: api.ChangeResult{Seq: ch.Seq}}
	res := &d.result
	hwm, err := v.HighWater(c.Replica)
	if err != nil {
		return d, err
	}
	switch {
	case ch.Seq == 0:
		res.Status, res.Code = api.ChangeRefused, api.CodeBadRequest
		return d, nil
	case ch.Seq <= hwm:
		res.Status = api.ChangeDuplicate
		res.Ops, err = v.Reported(c.Replica, ch.Seq)
		return d, err
	case ch.Seq > hwm+1:
		res.Status, res.Code, res.Expected = api.ChangeRefused, api.CodeSeqGap, hwm+1
		return d, nil
	}
	res.Status, d.apply = api.ChangeApplied, true
	cv := &refChangeView{admissionView: v}
	inChange := map[crdt.OpID]bool{} // merged or quarantined earlier in this change
	var refused refusedSummaries
	perCode := map[api.Code]int{}
	for i := range ch.Ops {
		op := &ch.Ops[i]
		ref := pre[i]
		if ref == nil {
			if ref, err = a.checkOpRef(cv, op, inChange, false, val[i]); err != nil {
				return d, err
			}
			if ref == nil {
				if ref, err = a.clinicalCheck(cv, op, c.Replica, c.Role); err != nil {
					return d, err
				}
			}
		}
		if ref != nil && ref.duplicate {
			continue // idempotent: already merged, with the same content
		}
		if ref == nil {
			rf, err := a.queueRef(cv, op)
			if err != nil {
				return d, err
			}
			if rf == nil {
				inChange[op.ID] = true
				cv.claim(op)
				d.accepted = append(d.accepted, *op)
				continue
			}
			ref = &refusal{code: api.CodeInvalidOp, detail: rf.Error()}
			if errors.Is(rf, errRecordTooLarge) {
				ref.code = api.CodeRecordTooLarge
			}
		}
		switch {
		case ref.quarantined:
			w, err := a.fitQuarantineRef(cv, store.QuarantineEntry{
				Op: *op, Author: c.User, Replica: c.Replica, Seq: ch.Seq, Code: string(ref.code), Reason: ref.detail, Reapplicable: true,
			})
			if err != nil {
				return d, err
			}
			if w != nil {
				// Held back: the record's causal context must keep saying
				// so once later ops of this device are merged (see reapply).
				inChange[op.ID] = true
				cv.claim(op)
				d.held = append(d.held, *w)
			} else {
				ref = &refusal{code: api.CodeQuarantineFull, detail: fmt.Sprintf("%s: %s; not kept: this device's or team's quarantine quota is used up", ref.code, ref.detail)}
			}
		case ref.code != api.CodeRecordErased:
			// Refused ops are kept as a summary per code, never as their
			// values. An op for an erased record is not kept at all:
			// keeping it would store again what the erasure removed.
			refused.add(op, ref.code, ref.detail)
		}
		// A flood of ops refused for one reason gets its detail a few
		// times, not once per op: the reply stays a small multiple of
		// the op count, not of the detail text.
		detail := ref.detail
		if perCode[ref.code]++; perCode[ref.code] > maxDetailsPerCode {
			detail = ""
		}
		res.Ops = append(res.Ops, api.OpResult{Index: i, Code: ref.code, Detail: detail, Quarantined: ref.quarantined})
	}
	// The summaries, as far as the device's quota allows (a summary that
	// does not fit is dropped: the reply still tells the device).
	for _, code := range refused.order {
		q := refused.by[code]
		q.Author, q.Replica, q.Seq = c.User, c.Replica, ch.Seq
		w, err := a.fitQuarantineRef(cv, *q)
		if err != nil {
			return d, err
		}
		if w != nil {
			d.summaries = append(d.summaries, *w)
		}
	}
	for _, k := range cv.order {
		if b := cv.batches[k]; b.Len() > 0 {
			d.batches = append(d.batches, b)
		}
	}
	if len(cv.sizes) > 0 {
		d.sizes = make(map[string]recSize, len(cv.sizes))
		for k, s := range cv.sizes {
			d.sizes[string(store.RecordKey(k[0], k[1], k[2]))] = *s
		}
	}
	return d, nil
}

// queue checks an op that passed every rule against the record's bounds
// and field types and queues it in the change's batch for its record. A
// non-nil refusal says why it cannot be merged.
func (a *admission) queueRef(v *refChangeView, op *crdt.Op) (refusal error, err error) {
	rec, err := v.Record(op.Team, op.Collection, op.Record)
	if err != nil {
		return nil, err
	}
	sz, err := v.size(op)
	if err != nil {
		return nil, err
	}
	if err := checkSize(a.bounds, sz, rec, op); err != nil {
		return err, nil
	}
	if err := v.batch(op, rec).Add(op); err != nil {
		return err, nil
	}
	return nil, nil
}

// checkOp runs the checks that depend on stored state: record owner,
// purge marker, duplicate op ID, preds, clock skew and the validator.
// Push and Reapply share it.
//
// verdict is the Validator's error for op when the caller ran it already
// (a push, see prechecks); reapply passes nil and the validator runs here.
func (a *admission) checkOpRef(v admissionView, op *crdt.Op, inChange map[crdt.OpID]bool, reapply bool, verdict error) (*refusal, error) {
	owner, err := v.Owner(op.Collection, op.Record)
	if err != nil {
		return nil, err
	}
	if owner != "" && owner != op.Team {
		return &refusal{code: api.CodeWrongTeam, detail: fmt.Sprintf("%s/%s belongs to another team", op.Collection, op.Record)}, nil
	}
	if owner == "" {
		// An erased record has no owner and a purge marker; it is never
		// created again.
		if erased, err := v.Erased(op.Collection, op.Record); err != nil {
			return nil, err
		} else if erased {
			return &refusal{code: api.CodeRecordErased, detail: fmt.Sprintf("%s/%s was erased", op.Collection, op.Record)}, nil
		}
	}
	if inChange[op.ID] {
		return &refusal{code: api.CodeInvalidOp, detail: fmt.Sprintf("op id %s used twice", op.ID)}, nil
	}
	rec, err := v.Record(op.Team, op.Collection, op.Record)
	if err != nil {
		return nil, err
	}
	// A write, add or append leaves its ID in the field state (live or
	// overwritten), so the state says whether it is already merged. A
	// remove leaves no trace; merging one twice changes nothing. A
	// re-applied op may sit among the overwritten IDs (a later op named it
	// in pred) without having been merged, and the quarantine entry it
	// comes from guarantees it is applied once, so reapply skips this.
	if !reapply && op.Kind != crdt.KindRemove && stateHas(rec, op.Field, op.ID) {
		same, err := sameAsMerged(v, op, rec)
		if err != nil {
			return nil, err
		}
		if same {
			return &refusal{duplicate: true}, nil
		}
		return &refusal{code: api.CodeOpIDReused, detail: fmt.Sprintf("op id %s is already used by an op with other content", op.ID)}, nil
	}
	for _, p := range op.Pred {
		if inChange[p] || stateHas(rec, op.Field, p) {
			continue
		}
		if q, err := v.Quarantined(p); err != nil {
			return nil, err
		} else if !q {
			return &refusal{code: api.CodeUnknownPred, detail: fmt.Sprintf("pred %s is not on the server", p)}, nil
		}
	}
	if a.skew != nil {
		if err := a.skew(op.ID.Time, a.now); err != nil {
			return &refusal{code: api.CodeClockSkew, detail: err.Error(), quarantined: true}, nil
		}
	}
	if verdict == nil && reapply && a.validator != nil {
		verdict = a.validator.ValidateOp(op)
	}
	if verdict != nil {
		return &refusal{code: validatorCode(verdict), detail: verdict.Error(), quarantined: true}, nil
	}
	return nil, nil
}
