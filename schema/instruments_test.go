package schema

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestInstrumentDefinitions(t *testing.T) {
	ons4, ok := InstrumentByCode(InstrumentONS4)
	if !ok || len(ons4.Items) != 4 || ons4.Summable || ons4.ProxyAllowed {
		t.Fatalf("ons4 definition: %+v", ons4)
	}
	for _, it := range ons4.Items {
		if it.Min != 0 || it.Max != 10 || it.Text == "" {
			t.Errorf("ons4 item %s: %+v", it.ID, it)
		}
		if it.LowerIsBetter != (it.ID == "ons4_anxious") {
			t.Errorf("ons4 item %s: LowerIsBetter %v", it.ID, it.LowerIsBetter)
		}
	}
	if ons4.Items[0].Text != "Overall, how satisfied are you with your life nowadays?" {
		t.Errorf("ons4 wording: %q", ons4.Items[0].Text)
	}
	ucla, _ := InstrumentByCode(InstrumentUCLA3)
	if len(ucla.Items) != 3 || !ucla.Summable {
		t.Fatalf("ucla3: %+v", ucla)
	}
	// Licensed instruments ship scores only, never item text.
	for _, in := range Instruments() {
		if in.ScoreOnly {
			for _, it := range in.Items {
				if it.Text != "" {
					t.Errorf("%s item %s ships text", in.Code, it.ID)
				}
			}
		}
	}
	// Every instrument is in the schema's instrument enum and vice versa.
	f, _ := Default().Field("assessments", "instrument")
	var codes []string
	for _, in := range Instruments() {
		codes = append(codes, in.Code)
	}
	if !slices.Equal(codes, f.Enum) {
		t.Errorf("instrument codes %v, schema enum %v", codes, f.Enum)
	}
}

func TestValidateResponse(t *testing.T) {
	cases := []struct {
		inst    string
		answers map[string]int
		ok      bool
	}{
		{"ons4", map[string]int{"ons4_life_satisfaction": 4, "ons4_worthwhile": 5, "ons4_happy": 3, "ons4_anxious": 7}, true},
		{"ons4", map[string]int{"ons4_happy": 0}, true},
		{"ons4", map[string]int{"ons4_happy": 10}, true},
		{"ons4", map[string]int{"ons4_happy": 11}, false},
		{"ons4", map[string]int{"ons4_happy": -1}, false},
		{"ons4", map[string]int{}, false},
		{"ons4", map[string]int{"ons4_total": 20}, false},
		{"ucla3", map[string]int{"ucla_companionship": 1, "ucla_left_out": 1, "ucla_isolated": 1}, true},
		{"ucla3", map[string]int{"ucla_companionship": 3, "ucla_left_out": 3, "ucla_isolated": 3}, true},
		{"ucla3", map[string]int{"ucla_companionship": 0, "ucla_left_out": 3, "ucla_isolated": 3}, false},
		{"ucla3", map[string]int{"ucla_companionship": 2, "ucla_left_out": 3}, false},
		{"ons_loneliness_direct", map[string]int{"ons_lonely": 1}, true},
		{"ons_loneliness_direct", map[string]int{"ons_lonely": 5}, true},
		{"ons_loneliness_direct", map[string]int{"ons_lonely": 6}, false},
		{"cfs", map[string]int{"cfs": 9}, true},
		{"cfs", map[string]int{"cfs": 0}, false},
		{"efi", map[string]int{"efi_category": 3, "efi_score_milli": 312}, true},
		{"efi", map[string]int{"efi_score_milli": 312}, false},
		{"swemwbs", map[string]int{"raw": 6}, false},
		{"wemwbs", map[string]int{"q1": 1}, false},
	}
	for _, c := range cases {
		err := ValidateResponse(c.inst, c.answers)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrInvalidResponse)) {
			t.Errorf("ValidateResponse(%s, %v) = %v, want ok=%v", c.inst, c.answers, err, c.ok)
		}
	}
}

func TestUCLA3Total(t *testing.T) {
	for a := 1; a <= 3; a++ {
		for b := 1; b <= 3; b++ {
			for c := 1; c <= 3; c++ {
				total, err := UCLA3Total(map[string]int{"ucla_companionship": a, "ucla_left_out": b, "ucla_isolated": c})
				if err != nil || total != a+b+c || total < 3 || total > 9 {
					t.Fatalf("%d %d %d: %d %v", a, b, c, total, err)
				}
			}
		}
	}
	if _, err := UCLA3Total(map[string]int{"ucla_companionship": 2}); err == nil {
		t.Fatal("partial response totalled")
	}
}

func TestEFICategory(t *testing.T) {
	for _, c := range []struct {
		milli int
		want  string
	}{{0, "fit"}, {120, "fit"}, {121, "mild"}, {240, "mild"}, {241, "moderate"}, {360, "moderate"}, {361, "severe"}, {1000, "severe"}} {
		if got := EFICategory(c.milli); got != c.want {
			t.Errorf("EFICategory(%d) = %s, want %s", c.milli, got, c.want)
		}
	}
}

func TestONS4FirstLast(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 9, d, 10, 0, 0, 0, time.UTC) }
	full := func(sat, worth, happy, anx int) map[string]int {
		return map[string]int{"ons4_life_satisfaction": sat, "ons4_worthwhile": worth, "ons4_happy": happy, "ons4_anxious": anx}
	}
	responses := []Response{
		{Instrument: "ons4", Answers: full(6, 6, 6, 3), AdministeredBy: AdministeredByProxy, At: day(1)}, // proxy: excluded
		{Instrument: "ons4", Answers: full(4, 5, 3, 7), AdministeredBy: AdministeredBySelf, At: day(3)},
		{Instrument: "ucla3", Answers: map[string]int{"ucla_companionship": 3}, At: day(4)},
		{Instrument: "ons4", Answers: map[string]int{"ons4_happy": 9}, AdministeredBy: AdministeredByProxy, At: day(29)}, // proxy: excluded
		{Instrument: "ons4", Answers: full(6, 6, 5, 4), AdministeredBy: AdministeredByReadAloud, At: day(20)},
		{Instrument: "ons4", Answers: map[string]int{"ons4_life_satisfaction": 3}, AdministeredBy: AdministeredBySelf, At: day(10)}, // interim
	}
	pairs := ONS4FirstLast(responses)
	if len(pairs) != 4 {
		t.Fatalf("pairs %+v", pairs)
	}
	want := map[string][3]int{ // first, last, improved(1/0)
		"ons4_life_satisfaction": {4, 6, 1},
		"ons4_worthwhile":        {5, 6, 1},
		"ons4_happy":             {3, 5, 1},
		"ons4_anxious":           {7, 4, 1},
	}
	for _, p := range pairs {
		w := want[p.Item]
		if p.First != w[0] || p.Last != w[1] || p.Improved != (w[2] == 1) || p.Change != w[1]-w[0] {
			t.Errorf("%s: %+v, want %v", p.Item, p, w)
		}
		if !p.FirstAt.Equal(day(3)) || !p.LastAt.Equal(day(20)) {
			t.Errorf("%s: times %v %v", p.Item, p.FirstAt, p.LastAt)
		}
	}
	// Anxiety going up is not an improvement.
	worse := ONS4FirstLast([]Response{
		{Instrument: "ons4", Answers: map[string]int{"ons4_anxious": 3}, At: day(1)},
		{Instrument: "ons4", Answers: map[string]int{"ons4_anxious": 6}, At: day(2)},
	})
	if len(worse) != 1 || worse[0].Improved || worse[0].Change != 3 {
		t.Fatalf("anxiety worse: %+v", worse)
	}
	// A single response, or only proxy answers, gives no pair.
	if p := ONS4FirstLast(responses[:2]); len(p) != 0 {
		t.Fatalf("one non-proxy response gave %+v", p)
	}
	if p := ONS4FirstLast(nil); len(p) != 0 {
		t.Fatal("pairs from nothing")
	}
}

func TestNoLicensedTextShipped(t *testing.T) {
	// SWEMWBS and CFS descriptors are licensed; guard against them creeping
	// into the embedded schema or instrument text.
	var all strings.Builder
	all.Write(DefaultJSON())
	for _, in := range Instruments() {
		all.WriteString(in.Preamble)
		for _, it := range in.Items {
			all.WriteString(it.Text)
		}
	}
	for _, phrase := range []string{"feeling optimistic about the future", "feeling useful", "Living with mild frailty", "Managing well"} {
		if strings.Contains(strings.ToLower(all.String()), strings.ToLower(phrase)) {
			t.Errorf("licensed text %q shipped", phrase)
		}
	}
}
