package server

import gosync "sync"

// Per-device sync slots (docs/PROTOCOL.md "Pipelined pushes", "Three in
// flight"). A device has at most max syncs in flight before their
// replies: one more gets 429 rate_limited at once, before any body is
// read. A sync gives its slot back just before it writes its reply
// (deviceSlot.replying), not once the reply is written: so a device that
// has read a reply may send its next request while two others are still
// on the wire, and never gets the 429 for it, however the reply was
// framed, flushed or relayed.
//
// Replies being written are bounded too: a device's syncs in the handler,
// before or writing their replies, are at most 2 × max. A device that
// never reads its replies thus keeps at most that many handlers (with
// their work budgets, admission.go) until the server's WriteTimeout,
// where it kept max before a sync gave its slot back early.
type deviceSlots struct {
	max  int
	mu   gosync.Mutex
	devs map[string]*deviceCount
}

// deviceCount is one device's syncs in the handler.
type deviceCount struct {
	active   int // before their replies
	replying int // writing their replies
}

// deviceSlot is one sync's hold on its device's slots, from enter to
// leave.
type deviceSlot struct {
	slots *deviceSlots
	dev   string
	state slotState
}

type slotState uint8

const (
	slotActive slotState = iota
	slotReplying
	slotLeft
)

// enter takes a slot for a sync of dev, or reports false if dev already
// has max syncs before their replies, or 2 × max in all.
func (d *deviceSlots) enter(dev string) (*deviceSlot, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.devs[dev]
	if c == nil {
		c = &deviceCount{}
		if d.devs == nil {
			d.devs = map[string]*deviceCount{}
		}
		d.devs[dev] = c
	}
	if c.active >= d.max || c.active+c.replying >= 2*d.max {
		return nil, false
	}
	c.active++
	return &deviceSlot{slots: d, dev: dev}, true
}

// replying gives the slot back as the sync starts writing its reply: it
// now counts only against the device's replies being written. Calling it
// again, or after leave, does nothing.
func (s *deviceSlot) replying() {
	s.slots.mu.Lock()
	defer s.slots.mu.Unlock()
	if s.state != slotActive {
		return
	}
	c := s.slots.devs[s.dev]
	c.active--
	c.replying++
	s.state = slotReplying
}

// leave ends the sync's hold, whether it replied or not. Calling it again
// does nothing.
func (s *deviceSlot) leave() {
	s.slots.mu.Lock()
	defer s.slots.mu.Unlock()
	c := s.slots.devs[s.dev]
	switch s.state {
	case slotActive:
		c.active--
	case slotReplying:
		c.replying--
	default:
		return
	}
	s.state = slotLeft
	if c.active <= 0 && c.replying <= 0 {
		delete(s.slots.devs, s.dev)
	}
}

// counts returns dev's syncs before their replies and writing them (for
// tests).
func (d *deviceSlots) counts(dev string) (active, replying int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.devs[dev]; c != nil {
		return c.active, c.replying
	}
	return 0, 0
}
