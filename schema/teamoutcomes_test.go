package schema

import (
	"testing"
	"time"
)

func TestUCLA3FirstLast(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 1, d, 0, 0, 0, 0, time.UTC) }
	ans := func(a, b, c int) map[string]int {
		return map[string]int{"ucla_companionship": a, "ucla_left_out": b, "ucla_isolated": c}
	}
	rs := []Response{
		{Instrument: InstrumentUCLA3, Answers: ans(3, 3, 2), At: day(5)},                                      // latest self answer: 8
		{Instrument: InstrumentUCLA3, Answers: ans(1, 1, 1), At: day(9), AdministeredBy: AdministeredByProxy}, // proxy: excluded
		{Instrument: InstrumentUCLA3, Answers: ans(2, 2, 2), At: day(1)},                                      // first: 6
		{Instrument: InstrumentONS4, Answers: map[string]int{"ons4_happy": 5}, At: day(7)},                    // another instrument
		{Instrument: InstrumentUCLA3, Answers: map[string]int{"ucla_companionship": 1}, At: day(8)},           // incomplete: skipped
	}
	u, ok := UCLA3FirstLast("p", rs)
	if !ok || u.First != 6 || u.Last != 8 || u.Change != 2 || u.Improved || !u.FirstAt.Equal(day(1)) || !u.LastAt.Equal(day(5)) {
		t.Fatalf("%+v %v", u, ok)
	}
	if _, ok := UCLA3FirstLast("p", rs[:1]); ok {
		t.Fatal("one response made a pair")
	}
	down, _ := UCLA3FirstLast("p", []Response{{Instrument: InstrumentUCLA3, Answers: ans(3, 3, 3), At: day(1)}, {Instrument: InstrumentUCLA3, Answers: ans(1, 2, 1), At: day(2)}})
	if !down.Improved || down.Change != -5 {
		t.Fatalf("less lonely is better: %+v", down)
	}
}
