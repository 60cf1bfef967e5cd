package schema

import (
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
)

// BenchmarkValidateOp measures the per-op cost the server and SDK pay, over
// a mix of typical home-visit ops.
func BenchmarkValidateOp(b *testing.B) {
	s := Default()
	ops := []*crdt.Op{
		writeOp(b, "people", "given_name", "Margaret"),
		writeOp(b, "people", "nhs_number", "9990000018"),
		writeOp(b, "people", "date_of_birth", "1938-04-02"),
		writeOp(b, "people", "cfs", 6),
		writeOp(b, "contacts", "actual_start", "2026-11-21T09:30:00Z"),
		writeOp(b, "needs", "category", "mobility_falls"),
		{ID: opID(3), Team: "t", Collection: "assessments", Record: "r", Field: "responses", Kind: crdt.KindAppend,
			Value: mv(b, map[string]any{"instrument": "ons4", "answers": map[string]int{"ons4_life_satisfaction": 4, "ons4_worthwhile": 5, "ons4_happy": 3, "ons4_anxious": 7}, "administered_by": "self_completed"})},
		{ID: opID(4), Team: "t", Collection: "people", Record: "r", Field: "case_notes", Kind: crdt.KindAppend,
			Value: mv(b, "Home visit. Talked through what matters; person keen to stay at home.")},
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.ValidateOp(ops[i%len(ops)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkValidateOpString measures the commonest op alone: a register
// write of a short string (issue 17's write workload is 30 of them per
// record).
func BenchmarkValidateOpString(b *testing.B) {
	s := Default()
	op := writeOp(b, "people", "given_name", "Margaret Elizabeth A")
	b.ReportAllocs()
	for b.Loop() {
		if err := s.ValidateOp(op); err != nil {
			b.Fatal(err)
		}
	}
}
