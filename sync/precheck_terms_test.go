package sync

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
)

// TestNewRecordTerms: for a new record's first change (each field
// written once), newRecordTerms gives the terms recordTerms gives for the
// whole record the ops make, in people and in other collections, with
// the indexed fields among others or absent.
func TestNewRecordTerms(t *testing.T) {
	rng := rand.New(rand.NewSource(testSeed(t)))
	indexed := []string{"given_name", "family_name", "preferred_name", "nhs_number", "postcode", "person_id", "cared_for_person_id", "carer_person_id"}
	values := []any{"Ann Hughes-Smith", "  ", "943 476 5919", "LS1 4AB", "p-17", "x\x00y", 7, "Ëlo Ño", ""}
	rep := crdt.NewReplicaID()
	withTerms := 0
	for n := range 400 {
		coll := []string{"people", "contacts", "carers"}[rng.Intn(3)]
		names := slices.Clone(indexed)
		for i := range 6 {
			names = append(names, fmt.Sprintf("f%02d", i))
		}
		rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		names = names[:rng.Intn(len(names))+1]
		var ops []crdt.Op
		for i, f := range names {
			ops = append(ops, crdt.Op{ID: crdt.OpID{Time: crdt.Timestamp(1000 + i), Replica: rep}, Team: "t", Collection: coll, Record: "r",
				Field: f, Kind: crdt.KindWrite, Value: crdt.MustValue(values[rng.Intn(len(values))])})
		}
		if _, ok := crdt.AppendNewState(nil, ops); !ok {
			t.Fatalf("case %d: not a first change", n)
		}
		want := recordTerms(fullRecord(ops))
		if got := newRecordTerms(ops); !slices.Equal(got, want) {
			t.Fatalf("case %d: %s record: terms %q, want %q", n, coll, got, want)
		}
		if len(want) > 0 {
			withTerms++
		}
	}
	if withTerms < 100 {
		t.Errorf("only %d records with terms", withTerms)
	}
}

// TestPrecheckMemo: prechecks' memo of the record ID and team answers
// refuses exactly what precheck alone refuses, op by op, on runs of ops
// whose record IDs and teams repeat, change and come back (valid and
// not, in the caller's teams and not); and so does the memo of a push
// whose ops were validated as they were decoded (shaped), for every op
// that passes crdt.Op.Validate.
func TestPrecheckMemo(t *testing.T) {
	rng := rand.New(rand.NewSource(testSeed(t)))
	c := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"a", "b"}}
	c.Teams = teamSet(c.Teams)
	ids := []string{"r1", "r2", "bad id", "", "r/3", "ok-4"}
	teams := []string{"a", "b", "c"}
	var m precheckMemo
	shaped := precheckMemo{shaped: true}
	n := 0
	for i := range 2000 {
		if rng.Intn(5) == 0 {
			n = rng.Intn(len(ids))
		}
		op := wop(opAt(c.Replica, int64(10_000-i)), teams[rng.Intn(len(teams))], ids[n], "f", i)
		if rng.Intn(3) == 0 {
			op.Team = teams[0]
		}
		want, got := precheck(&c, &op), m.precheck(&c, &op)
		if (want == nil) != (got == nil) || want != nil && (want.code != got.code || want.detail != got.detail) {
			t.Fatalf("op %d (%q, %q): memo %+v, precheck %+v", i, op.Team, op.Record, got, want)
		}
		if op.Validate() == nil {
			// An op decoded and validated already (shaped, see
			// api.SyncRequest.OpsValidated) gets the same answer
			// without Validate run again.
			got = shaped.precheck(&c, &op)
			if (want == nil) != (got == nil) || want != nil && (want.code != got.code || want.detail != got.detail) {
				t.Fatalf("op %d (%q, %q), shaped: memo %+v, precheck %+v", i, op.Team, op.Record, got, want)
			}
		}
	}
}
