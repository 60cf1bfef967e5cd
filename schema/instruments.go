package schema

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// ErrInvalidResponse: an instrument response with an unknown instrument or
// item, a missing required item, or an answer out of range.
var ErrInvalidResponse = errors.New("schema: invalid instrument response")

// Instrument codes, as the assessments collection's instrument enum uses
// them.
const (
	InstrumentONS4          = "ons4"
	InstrumentUCLA3         = "ucla3"
	InstrumentONSLoneliness = "ons_loneliness_direct"
	InstrumentCFS           = "cfs"
	InstrumentEFI           = "efi"
	InstrumentSWEMWBSScore  = "swemwbs"
	InstrumentPAMScore      = "pam"
)

// Who gave a response: the assessments collection's administered_by enum.
const (
	AdministeredBySelf      = "self_completed"
	AdministeredByReadAloud = "worker_read_aloud"
	AdministeredByProxy     = "proxy"
)

const (
	ons4AnxiousItem          = "ons4_anxious"
	licenceCrownOGL          = "Crown copyright, Open Government Licence v3.0"
	licenceReceivedScoreOnly = "licensed instrument: Doorstep stores scores received from elsewhere and ships no item text"
)

// Option is one labelled response option.
type Option struct {
	Value int
	Label string
}

// Item is one question of an instrument, or one received score.
type Item struct {
	ID string
	// Text is the public wording; empty for a received score of a
	// licensed instrument.
	Text string
	// Min and Max bound the answer.
	Min, Max int
	// MinLabel and MaxLabel are the scale anchors, when the item has them.
	MinLabel, MaxLabel string
	// Options label each answer, when the item has labelled options.
	Options []Option
	// LowerIsBetter marks an item that runs the other way (ONS4 anxiety).
	LowerIsBetter bool
	// Optional items may be left unanswered.
	Optional bool
}

// Instrument defines an outcome or assessment instrument.
type Instrument struct {
	Code     string
	Name     string
	Version  string
	Preamble string
	Items    []Item
	// Summable reports whether the items may be added into a total
	// (UCLA-3). ONS4 is never summed.
	Summable bool
	// ProxyAllowed is false for instruments whose answers must be the
	// person's own; proxy answers are excluded from outcomes.
	ProxyAllowed bool
	// ScoreOnly instruments are licensed elsewhere: only scores received
	// from another system are stored, never item text.
	ScoreOnly bool
	Licence   string
	Notes     string
}

var ons4Scale = "For each of these questions I'd like you to give an answer on a scale of nought to 10, where nought is 'not at all' and 10 is 'completely'."

var instruments = []*Instrument{
	{
		Code:    InstrumentONS4,
		Name:    "ONS4 personal well-being",
		Version: "ONS APS harmonised standard, 2019",
		Preamble: "Next I would like to ask you four questions about your feelings on aspects of your life. " +
			"There are no right or wrong answers. " + ons4Scale,
		Items: []Item{
			{ID: "ons4_life_satisfaction", Text: "Overall, how satisfied are you with your life nowadays?", Max: 10,
				MinLabel: "not at all satisfied", MaxLabel: "completely satisfied", Optional: true},
			{ID: "ons4_worthwhile", Text: "Overall, to what extent do you feel that the things you do in your life are worthwhile?", Max: 10,
				MinLabel: "not at all worthwhile", MaxLabel: "completely worthwhile", Optional: true},
			{ID: "ons4_happy", Text: "Overall, how happy did you feel yesterday?", Max: 10,
				MinLabel: "not at all happy", MaxLabel: "completely happy", Optional: true},
			{ID: ons4AnxiousItem, Text: "On a scale where nought is 'not at all anxious' and 10 is 'completely anxious', overall, how anxious did you feel yesterday?", Max: 10,
				MinLabel: "not at all anxious", MaxLabel: "completely anxious", LowerIsBetter: true, Optional: true},
		},
		ProxyAllowed: false,
		Licence:      licenceCrownOGL,
		Notes:        "Four separate 0-10 scores, never summed into a composite. Anxiety runs the other way: lower is better. Asked in person, never by proxy; proxy answers are excluded from outcomes.",
	},
	{
		Code:    InstrumentUCLA3,
		Name:    "UCLA 3-item loneliness scale",
		Version: "Hughes et al. 2004",
		Items: []Item{
			{ID: "ucla_companionship", Text: "How often do you feel that you lack companionship?", Min: 1, Max: 3, Options: uclaOptions},
			{ID: "ucla_left_out", Text: "How often do you feel left out?", Min: 1, Max: 3, Options: uclaOptions},
			{ID: "ucla_isolated", Text: "How often do you feel isolated from others?", Min: 1, Max: 3, Options: uclaOptions},
		},
		Summable: true,
		Licence:  "public, ONS-recommended national indicator; no fee found (terms to confirm)",
		Notes:    "Each item 1-3; the total runs 3-9 and higher means lonelier.",
	},
	{
		Code: InstrumentONSLoneliness,
		Name: "ONS direct loneliness question",
		Items: []Item{
			{ID: "ons_lonely", Text: "How often do you feel lonely?", Min: 1, Max: 5, Options: []Option{
				{1, "Often/always"}, {2, "Some of the time"}, {3, "Occasionally"}, {4, "Hardly ever"}, {5, "Never"},
			}},
		},
		Licence: licenceCrownOGL,
		Notes:   "Answer codes 1 (often/always) to 5 (never): lower means lonelier. Response wording to confirm against the ONS guidance.",
	},
	{
		Code: InstrumentCFS,
		Name: "Clinical Frailty Scale (score received)",
		Items: []Item{
			{ID: "cfs", Min: 1, Max: 9},
		},
		ProxyAllowed: true,
		ScoreOnly:    true,
		Licence:      licenceReceivedScoreOnly,
		Notes:        "A clinical judgement made by the frailty MDT or GP, recorded here as received (1-9). Descriptors are copyright and not shipped.",
	},
	{
		Code: InstrumentEFI,
		Name: "electronic Frailty Index (received from the GP system)",
		Items: []Item{
			{ID: "efi_category", Min: 1, Max: 4, Options: []Option{{1, "fit"}, {2, "mild"}, {3, "moderate"}, {4, "severe"}}},
			{ID: "efi_score_milli", Min: 0, Max: 1000, Optional: true},
		},
		ProxyAllowed: true,
		ScoreOnly:    true,
		Licence:      "computed by GP systems from the coded record; Doorstep never computes it",
		Notes:        "Category as received; the score, when received, in thousandths (0.312 is 312).",
	},
	{
		Code:         InstrumentSWEMWBSScore,
		Name:         "SWEMWBS (raw score received)",
		Items:        []Item{{ID: "raw", Min: 7, Max: 35}},
		ScoreOnly:    true,
		ProxyAllowed: false,
		Licence:      licenceReceivedScoreOnly + " (a Warwick licence reference is required)",
	},
	{
		Code:         InstrumentPAMScore,
		Name:         "Patient Activation Measure (score received)",
		Items:        []Item{{ID: "score", Min: 0, Max: 100}, {ID: "level", Min: 1, Max: 4}},
		ScoreOnly:    true,
		ProxyAllowed: false,
		Licence:      licenceReceivedScoreOnly + " (only under the customer's licence)",
	},
}

var uclaOptions = []Option{{1, "Hardly ever"}, {2, "Some of the time"}, {3, "Often"}}

// Instruments returns the instrument definitions: ONS4, UCLA-3 and the
// ONS direct loneliness question with their public wording, and
// score-only definitions (no item text) for CFS, eFI, SWEMWBS and PAM.
func Instruments() []*Instrument { return slices.Clone(instruments) }

// InstrumentByCode returns the instrument with the given code.
func InstrumentByCode(code string) (*Instrument, bool) {
	for _, in := range instruments {
		if in.Code == code {
			return in, true
		}
	}
	return nil, false
}

// Item returns the instrument's item with the given ID.
func (in *Instrument) Item(id string) (Item, bool) {
	for _, it := range in.Items {
		if it.ID == id {
			return it, true
		}
	}
	return Item{}, false
}

// ValidateResponse checks an instrument response: a known instrument, only
// its items, every required item answered, each answer within its range.
// Errors wrap ErrInvalidResponse.
func ValidateResponse(instrument string, answers map[string]int) error {
	in, ok := InstrumentByCode(instrument)
	if !ok {
		return fmt.Errorf("%w: unknown instrument %q", ErrInvalidResponse, clip(instrument))
	}
	ids := make([]string, 0, len(answers))
	for id := range answers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		it, ok := in.Item(id)
		if !ok {
			return fmt.Errorf("%w: %s has no item %q", ErrInvalidResponse, in.Code, clip(id))
		}
		if v := answers[id]; v < it.Min || v > it.Max {
			return fmt.Errorf("%w: %s %s = %d, want %d-%d", ErrInvalidResponse, in.Code, id, v, it.Min, it.Max)
		}
	}
	for _, it := range in.Items {
		if _, ok := answers[it.ID]; !ok && !it.Optional {
			return fmt.Errorf("%w: %s item %s unanswered", ErrInvalidResponse, in.Code, it.ID)
		}
	}
	if len(answers) == 0 {
		return fmt.Errorf("%w: %s response without answers", ErrInvalidResponse, in.Code)
	}
	return nil
}

// UCLA3Total returns the UCLA-3 total, 3-9 (higher is lonelier), of a
// complete, valid response.
func UCLA3Total(answers map[string]int) (int, error) {
	if err := ValidateResponse(InstrumentUCLA3, answers); err != nil {
		return 0, err
	}
	return answers["ucla_companionship"] + answers["ucla_left_out"] + answers["ucla_isolated"], nil
}

// EFICategory returns the eFI category for a score in thousandths: fit up
// to 0.12, mild up to 0.24, moderate up to 0.36, severe above. Doorstep
// never computes the eFI itself; this only bands a received score.
func EFICategory(scoreMilli int) string {
	switch {
	case scoreMilli <= 120:
		return "fit"
	case scoreMilli <= 240:
		return "mild"
	case scoreMilli <= 360:
		return "moderate"
	}
	return "severe"
}

// Response is one recorded instrument response, as the outcome helpers
// read it.
type Response struct {
	Instrument     string
	Answers        map[string]int
	AdministeredBy string // AdministeredBySelf, AdministeredByReadAloud or AdministeredByProxy
	At             time.Time
}

// Proxy reports whether someone else answered for the person.
func (r Response) Proxy() bool { return r.AdministeredBy == AdministeredByProxy }

// ONS4Pair is one ONS4 item's first and last score for a person: the
// outcome commissioners ask for.
type ONS4Pair struct {
	Item            string
	First, Last     int
	FirstAt, LastAt time.Time
	// Change is Last - First.
	Change int
	// Improved reports movement in the good direction: up, or down for
	// anxiety.
	Improved bool
}

// ONS4FirstLast returns, per ONS4 item in instrument order, the person's
// first and last scores from the given responses. Proxy answers and other
// instruments are ignored; an item needs answers at two different times to
// form a pair. The scores are never summed.
func ONS4FirstLast(responses []Response) []ONS4Pair {
	rs := slices.Clone(responses)
	slices.SortStableFunc(rs, func(a, b Response) int { return a.At.Compare(b.At) })
	in, _ := InstrumentByCode(InstrumentONS4)
	var out []ONS4Pair
	for _, it := range in.Items {
		var first, last *Response
		for i := range rs {
			r := &rs[i]
			if r.Instrument != InstrumentONS4 || r.Proxy() {
				continue
			}
			v, ok := r.Answers[it.ID]
			if !ok || v < it.Min || v > it.Max {
				continue
			}
			if first == nil {
				first = r
			}
			last = r
		}
		if first == nil || !last.At.After(first.At) {
			continue
		}
		p := ONS4Pair{Item: it.ID, First: first.Answers[it.ID], Last: last.Answers[it.ID], FirstAt: first.At, LastAt: last.At}
		p.Change = p.Last - p.First
		p.Improved = p.Change > 0
		if it.LowerIsBetter {
			p.Improved = p.Change < 0
		}
		out = append(out, p)
	}
	return out
}
