package server

import "testing"

// TestDeviceSlotsReplying: a sync that starts writing its reply gives its
// slot back (a device may send another at once), but a device's replies
// being written are bounded too; leave is safe in every state and more
// than once.
func TestDeviceSlotsReplying(t *testing.T) {
	d := &deviceSlots{max: 2}
	a, ok := d.enter("dev")
	if !ok {
		t.Fatal("first refused")
	}
	b, ok := d.enter("dev")
	if !ok {
		t.Fatal("second refused")
	}
	if _, ok := d.enter("dev"); ok {
		t.Fatal("a third before any reply was let in")
	}
	a.replying()
	a.replying() // again: no effect
	c, ok := d.enter("dev")
	if !ok {
		t.Fatal("a third once the first is writing its reply was refused")
	}
	if act, rep := d.counts("dev"); act != 2 || rep != 1 {
		t.Fatalf("counts %d active, %d replying; want 2, 1", act, rep)
	}
	// A device that reads no reply: its replies being written count
	// toward 2 × max syncs in all.
	b.replying()
	c.replying()
	e, ok := d.enter("dev")
	if !ok {
		t.Fatal("refused with 3 replies being written and none before its reply")
	}
	if _, ok := d.enter("dev"); ok {
		t.Fatal("let in with 2 × max syncs in the handler")
	}
	a.leave()
	a.leave() // again: no effect
	f, ok := d.enter("dev")
	if !ok {
		t.Fatal("refused once a reply was written")
	}
	for _, s := range []*deviceSlot{b, c, e, f, f} {
		s.leave()
	}
	if act, rep := d.counts("dev"); act != 0 || rep != 0 || len(d.devs) != 0 {
		t.Fatalf("after every leave: %d active, %d replying, %d devices", act, rep, len(d.devs))
	}
}
