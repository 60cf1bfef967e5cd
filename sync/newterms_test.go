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
