package schema

import (
	"fmt"
	"slices"
	"time"

	"github.com/doorstep-health/doorstep/crdt"
)

// AssessmentResponses decodes the instrument responses logged in one
// assessments record (the default schema's shape): the person it is about
// and each entry of its responses log. A response takes its time from its
// recorded_at, else the record's assessed_at, and who answered from its
// administered_by, else the record's. Entries that do not decode or are not
// valid responses are skipped and reported in the error, after the rest
// are returned.
func AssessmentResponses(rec *crdt.Record) (personID string, responses []Response, err error) {
	if rec.Collection != "assessments" {
		return "", nil, fmt.Errorf("assessment responses: record %s is in %s", rec.ID, rec.Collection)
	}
	personID = registerString(rec, "person_id")
	assessedAt, _ := time.Parse(time.RFC3339Nano, registerString(rec, "assessed_at"))
	who := registerString(rec, "administered_by")
	var bad int
	for _, e := range rec.Field("responses").Entries {
		v, derr := DecodeValue(e.Value)
		m, ok := v.(map[string]any)
		if derr != nil || !ok {
			bad++
			continue
		}
		r := Response{At: assessedAt, AdministeredBy: who, Answers: map[string]int{}}
		r.Instrument, _ = m["instrument"].(string)
		if s, ok := m["administered_by"].(string); ok {
			r.AdministeredBy = s
		}
		if s, ok := m["recorded_at"].(string); ok {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				r.At = t
			}
		}
		answers, _ := m["answers"].(map[string]any)
		for k, x := range answers {
			if n, ok := x.(int64); ok && n >= -1<<31 && n < 1<<31 {
				r.Answers[k] = int(n)
			}
		}
		if ValidateResponse(r.Instrument, r.Answers) != nil {
			bad++
			continue
		}
		responses = append(responses, r)
	}
	if bad > 0 {
		err = fmt.Errorf("assessment %s: %d of %d responses unreadable", rec.ID, bad, len(rec.Field("responses").Entries))
	}
	return personID, responses, err
}

func registerString(rec *crdt.Record, field string) string {
	e, ok := rec.Field(field).Winner()
	if !ok {
		return ""
	}
	v, err := DecodeValue(e.Value)
	if err != nil {
		return ""
	}
	s, _ := v.(string)
	return s
}

// PersonOutcome is one person's ONS4 first and last scores.
type PersonOutcome struct {
	PersonID string
	Pairs    []ONS4Pair
}

// ONS4Outcomes reads assessments records (others are ignored, as are
// deleted records) and returns, per person with at least one pair, the ONS4
// first and last scores, sorted by person ID: the outcome export
// commissioners ask for. Proxy answers are excluded (see ONS4FirstLast).
// Unreadable responses are skipped; the count is returned.
func ONS4Outcomes(records []*crdt.Record) (outcomes []PersonOutcome, skipped int) {
	byPerson := map[string][]Response{}
	for _, rec := range records {
		if rec.Collection != "assessments" || rec.Deleted() {
			continue
		}
		person, rs, err := AssessmentResponses(rec)
		if err != nil {
			skipped += len(rec.Field("responses").Entries) - len(rs)
		}
		if person != "" {
			byPerson[person] = append(byPerson[person], rs...)
		}
	}
	for person, rs := range byPerson {
		if pairs := ONS4FirstLast(rs); len(pairs) > 0 {
			outcomes = append(outcomes, PersonOutcome{PersonID: person, Pairs: pairs})
		}
	}
	slices.SortFunc(outcomes, func(a, b PersonOutcome) int {
		switch {
		case a.PersonID < b.PersonID:
			return -1
		case a.PersonID > b.PersonID:
			return 1
		}
		return 0
	})
	return outcomes, skipped
}

// ONS4ItemSummary summarises one ONS4 item over many people. The four
// items are reported separately, never summed.
type ONS4ItemSummary struct {
	Item                string
	People              int
	MeanFirst, MeanLast float64
	// Improved counts people whose score moved the good way (down for
	// anxiety); Worse the other way.
	Improved, Same, Worse int
}

// SummariseONS4 summarises outcomes per ONS4 item, in instrument order.
func SummariseONS4(outcomes []PersonOutcome) []ONS4ItemSummary {
	in, _ := InstrumentByCode(InstrumentONS4)
	var out []ONS4ItemSummary
	for _, it := range in.Items {
		s := ONS4ItemSummary{Item: it.ID}
		var first, last int
		for _, o := range outcomes {
			for _, p := range o.Pairs {
				if p.Item != it.ID {
					continue
				}
				s.People++
				first += p.First
				last += p.Last
				switch {
				case p.Change == 0:
					s.Same++
				case p.Improved:
					s.Improved++
				default:
					s.Worse++
				}
			}
		}
		if s.People > 0 {
			s.MeanFirst = float64(first) / float64(s.People)
			s.MeanLast = float64(last) / float64(s.People)
		}
		out = append(out, s)
	}
	return out
}
