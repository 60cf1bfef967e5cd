package schema

import (
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
)

func TestONS4Outcomes(t *testing.T) {
	n := uint16(10)
	next := func() crdt.OpID { n++; return opID(n) }
	assessment := func(id, person, at, who string, answers map[string]int) *crdt.Record {
		rec := crdt.NewRecord("t", "assessments", id)
		apply := func(op crdt.Op) {
			if err := Default().ValidateOp(&op); err != nil {
				t.Fatal(err)
			}
			if err := rec.Apply(&op); err != nil {
				t.Fatal(err)
			}
		}
		apply(rec.Write(next(), "person_id", mv(t, person)))
		apply(rec.Write(next(), "instrument", mv(t, "ons4")))
		apply(rec.Write(next(), "assessed_at", mv(t, at)))
		apply(rec.Write(next(), "administered_by", mv(t, who)))
		apply(rec.Append(next(), "responses", mv(t, map[string]any{"instrument": "ons4", "answers": answers})))
		return rec
	}
	full := func(s, w, h, a int) map[string]int {
		return map[string]int{"ons4_life_satisfaction": s, "ons4_worthwhile": w, "ons4_happy": h, "ons4_anxious": a}
	}
	recs := []*crdt.Record{
		assessment("a1", "p1", "2026-09-01T10:00:00Z", "self_completed", full(4, 5, 3, 7)),
		assessment("a2", "p1", "2026-10-20T10:00:00Z", "worker_read_aloud", full(6, 5, 5, 8)),
		assessment("a3", "p2", "2026-09-01T10:00:00Z", "self_completed", full(3, 3, 3, 6)),
		assessment("a4", "p2", "2026-10-01T10:00:00Z", "proxy", full(9, 9, 9, 0)), // proxy: no pair for p2
		assessment("a5", "p3", "2026-09-01T10:00:00Z", "self_completed", full(2, 2, 2, 9)),
		assessment("a6", "p3", "2026-10-01T10:00:00Z", "self_completed", full(8, 8, 8, 1)),
		crdt.NewRecord("t", "people", "p1"), // not an assessment: ignored
	}
	// p3's final record was deleted: it no longer counts.
	del := recs[5].Delete(next())
	if err := recs[5].Apply(&del); err != nil {
		t.Fatal(err)
	}
	// An entry that is not a valid response (written around validation).
	bad := recs[0].Append(next(), "responses", mv(t, map[string]any{"instrument": "ons4", "answers": map[string]int{"ons4_happy": 40}}))
	if err := recs[0].Apply(&bad); err != nil {
		t.Fatal(err)
	}
	outcomes, skipped := ONS4Outcomes(recs)
	if skipped != 1 {
		t.Errorf("skipped %d, want 1", skipped)
	}
	if len(outcomes) != 1 || outcomes[0].PersonID != "p1" || len(outcomes[0].Pairs) != 4 {
		t.Fatalf("outcomes %+v", outcomes)
	}
	sum := SummariseONS4(outcomes)
	want := []ONS4ItemSummary{
		{Item: "ons4_life_satisfaction", People: 1, MeanFirst: 4, MeanLast: 6, Improved: 1},
		{Item: "ons4_worthwhile", People: 1, MeanFirst: 5, MeanLast: 5, Same: 1},
		{Item: "ons4_happy", People: 1, MeanFirst: 3, MeanLast: 5, Improved: 1},
		{Item: "ons4_anxious", People: 1, MeanFirst: 7, MeanLast: 8, Worse: 1},
	}
	for i := range want {
		if sum[i] != want[i] {
			t.Errorf("summary %d: %+v, want %+v", i, sum[i], want[i])
		}
	}
	if _, _, err := AssessmentResponses(recs[6]); err == nil {
		t.Error("responses read from a people record")
	}
}
