package server

import "testing"

// TestPipelineHoldBounds: reservations of held pipelined requests stay
// within the per-device and the all-device bounds, grow only, and are
// given back by unreserve and leave.
func TestPipelineHoldBounds(t *testing.T) {
	p := &pipeline{holdMax: 100, holdTotal: 150}
	a1, a2, b := p.enter("a"), p.enter("a"), p.enter("b")
	for _, st := range []struct {
		s    *pipeSync
		n    int64
		want bool
	}{
		{a1, 60, true},
		{a1, 40, true},  // holds 60 already
		{a2, 50, false}, // a would hold 110
		{a2, 40, true},  // a holds 100
		{b, 60, false},  // all would hold 160
		{b, 50, true},   // all hold 150
		{b, 51, false},
	} {
		if got := p.reserve(st.s, st.n); got != st.want {
			t.Fatalf("reserve %d: %v, want %v (device %d, all %d)", st.n, got, st.want, p.devs[st.s.dev].held, p.held)
		}
	}
	p.unreserve(a1)
	if p.held != 90 || p.devs["a"].held != 40 {
		t.Fatalf("after unreserve: all %d, a %d", p.held, p.devs["a"].held)
	}
	p.leave(a2)
	p.leave(b)
	if p.held != 0 || p.devs["a"].held != 0 || p.devs["b"] != nil {
		t.Fatalf("after leave: all %d, a %d, b %v", p.held, p.devs["a"].held, p.devs["b"])
	}
	p.leave(a1)
	if len(p.devs) != 0 {
		t.Fatalf("devices left: %v", p.devs)
	}
	if off := (&pipeline{}); off.reserve(off.enter("c"), 0) {
		t.Fatal("a pipeline with no hold bound reserved bytes")
	}
}
