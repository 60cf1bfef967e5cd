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
	b := NewOutcomeBook()
	b.Put(records)
	return b.Outcomes()
}

// summarise sorts the per-person outcomes and computes the summaries.
func (o *Outcomes) summarise() {
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

// OutcomeBook keeps a team's assessment responses by record and each
// person's outcome, so that the export can be brought up to date from the
// records that changed (recomputing only their people) instead of
// re-reading every assessment. It is not safe for concurrent use.
type OutcomeBook struct {
	byRecord map[string]bookEntry       // assessments record ID → its person and responses
	records  map[string]map[string]bool // person → their assessments records
	results  map[string]personResult    // person → outcome, for people not dirty
	dirty    map[string]bool            // people whose records changed since Outcomes
	skipped  map[string]int             // unreadable responses by record
}

type bookEntry struct {
	person    string
	responses []Response
}

type personResult struct {
	ons4 []ONS4Pair
	ucla UCLA3Outcome
	has  bool // ucla is set
}

// NewOutcomeBook returns an empty book.
func NewOutcomeBook() *OutcomeBook {
	return &OutcomeBook{byRecord: map[string]bookEntry{}, records: map[string]map[string]bool{},
		results: map[string]personResult{}, dirty: map[string]bool{}, skipped: map[string]int{}}
}

func (b *OutcomeBook) drop(id string) {
	if old, ok := b.byRecord[id]; ok {
		b.dirty[old.person] = true
		delete(b.records[old.person], id)
		delete(b.byRecord, id)
	}
	delete(b.skipped, id)
}

// Put records the current state of assessments records (others are
// ignored), replacing what the book held for them; a deleted record is
// dropped from the book.
func (b *OutcomeBook) Put(records []*crdt.Record) {
	for _, rec := range records {
		if rec.Collection != "assessments" {
			continue
		}
		b.drop(rec.ID)
		if rec.Deleted() {
			continue
		}
		person, rs, err := AssessmentResponses(rec)
		if err != nil {
			b.skipped[rec.ID] = len(rec.Field("responses").Entries) - len(rs)
		}
		if person != "" {
			b.byRecord[rec.ID] = bookEntry{person: person, responses: rs}
			if b.records[person] == nil {
				b.records[person] = map[string]bool{}
			}
			b.records[person][rec.ID] = true
			b.dirty[person] = true
		}
	}
}

// Outcomes computes the export from the book, as TeamOutcomes does from
// the records, recomputing only the people whose records changed.
func (b *OutcomeBook) Outcomes() Outcomes {
	for person := range b.dirty {
		var rs []Response
		for id := range b.records[person] {
			rs = append(rs, b.byRecord[id].responses...)
		}
		if len(rs) == 0 {
			delete(b.results, person)
			delete(b.records, person)
			continue
		}
		// A fixed order, so that ties in time resolve the same way
		// however the records were gathered.
		slices.SortStableFunc(rs, func(a, c Response) int {
			if d := a.At.Compare(c.At); d != 0 {
				return d
			}
			return strings.Compare(a.Instrument, c.Instrument)
		})
		var pr personResult
		pr.ons4 = ONS4FirstLast(rs)
		pr.ucla, pr.has = UCLA3FirstLast(person, rs)
		b.results[person] = pr
	}
	clear(b.dirty)
	var o Outcomes
	for _, n := range b.skipped {
		o.Skipped += n
	}
	for person, pr := range b.results {
		if len(pr.ons4) > 0 {
			o.ONS4 = append(o.ONS4, PersonOutcome{PersonID: person, Pairs: pr.ons4})
		}
		if pr.has {
			o.UCLA3 = append(o.UCLA3, pr.ucla)
		}
	}
	o.summarise()
	return o
}

// Drop removes records from the book (records that no longer exist).
func (b *OutcomeBook) Drop(ids ...string) {
	for _, id := range ids {
		b.drop(id)
	}
}
