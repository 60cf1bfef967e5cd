package schema

import (
	"slices"
	"strings"
	"time"

	"github.com/doorstep-health/doorstep/crdt"
)

// UCLA3Outcome is one person's UCLA-3 total (3-9, higher is lonelier) at
// their first and latest self-answered response.
type UCLA3Outcome struct {
	PersonID        string
	First, Last     int
	FirstAt, LastAt time.Time
	Change          int  // Last - First
	Improved        bool // lonelier is worse: improved means the total went down
}

// UCLA3Summary summarises UCLA-3 outcomes over many people.
type UCLA3Summary struct {
	People                int
	MeanFirst, MeanLast   float64
	Improved, Same, Worse int
}

// Outcomes is a team's outcome export: ONS4 per person and per item, and
// UCLA-3 per person and overall. Proxy answers are excluded throughout and
// ONS4 items are never summed.
type Outcomes struct {
	ONS4        []PersonOutcome
	ONS4Summary []ONS4ItemSummary
	UCLA3       []UCLA3Outcome
	UCLA3Total  UCLA3Summary
	// Skipped counts responses that could not be read.
	Skipped int
}

// TeamOutcomes computes the outcome export from a team's assessments
// records (other collections and deleted records are ignored).
func TeamOutcomes(records []*crdt.Record) Outcomes {
	var o Outcomes
	byPerson := map[string][]Response{}
	for _, rec := range records {
		if rec.Collection != "assessments" || rec.Deleted() {
			continue
		}
		person, rs, err := AssessmentResponses(rec)
		if err != nil {
			o.Skipped += len(rec.Field("responses").Entries) - len(rs)
		}
		if person != "" {
			byPerson[person] = append(byPerson[person], rs...)
		}
	}
	for person, rs := range byPerson {
		if pairs := ONS4FirstLast(rs); len(pairs) > 0 {
			o.ONS4 = append(o.ONS4, PersonOutcome{PersonID: person, Pairs: pairs})
		}
		if u, ok := UCLA3FirstLast(person, rs); ok {
			o.UCLA3 = append(o.UCLA3, u)
		}
	}
	slices.SortFunc(o.ONS4, func(a, b PersonOutcome) int { return strings.Compare(a.PersonID, b.PersonID) })
	slices.SortFunc(o.UCLA3, func(a, b UCLA3Outcome) int { return strings.Compare(a.PersonID, b.PersonID) })
	o.ONS4Summary = SummariseONS4(o.ONS4)
	var first, last int
	for _, u := range o.UCLA3 {
		s := &o.UCLA3Total
		s.People++
		first += u.First
		last += u.Last
		switch {
		case u.Change == 0:
			s.Same++
		case u.Improved:
			s.Improved++
		default:
			s.Worse++
		}
	}
	if n := o.UCLA3Total.People; n > 0 {
		o.UCLA3Total.MeanFirst = float64(first) / float64(n)
		o.UCLA3Total.MeanLast = float64(last) / float64(n)
	}
	return o
}

// UCLA3FirstLast returns a person's first and latest UCLA-3 totals from
// complete, self-answered (or read-aloud) responses at two different
// times; ok is false without such a pair.
func UCLA3FirstLast(person string, responses []Response) (UCLA3Outcome, bool) {
	rs := slices.Clone(responses)
	slices.SortStableFunc(rs, func(a, b Response) int { return a.At.Compare(b.At) })
	var first, last *Response
	var ft, lt int
	for i := range rs {
		r := &rs[i]
		if r.Instrument != InstrumentUCLA3 || r.Proxy() {
			continue
		}
		total, err := UCLA3Total(r.Answers)
		if err != nil {
			continue
		}
		if first == nil {
			first, ft = r, total
		}
		last, lt = r, total
	}
	if first == nil || !last.At.After(first.At) {
		return UCLA3Outcome{}, false
	}
	return UCLA3Outcome{PersonID: person, First: ft, Last: lt, FirstAt: first.At, LastAt: last.At, Change: lt - ft, Improved: lt < ft}, true
}
