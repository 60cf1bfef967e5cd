package server

import (
	"context"
	"strconv"
	gosync "sync"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/labstack/echo/v4"
)

// Pipelined pushes (docs/PROTOCOL.md "Pipelined pushes"). A device may
// send its next push while the one before is still in flight, naming in
// the api.HeaderAfterSeq header the last seq it pushed in that one. The
// engine applies a replica's changes strictly in seq order and refuses a
// later one with seq_gap, so such a request is held back here, before its
// body is read, until the seq it follows is decided:
//
//   - the replica's high-water reaches it (the one before committed), or
//   - no other sync of the device has been in the handler for a short
//     grace (the one before ended without applying it, or never arrived:
//     the engine then answers seq_gap and the device falls back to one
//     request at a time), or
//   - Config.BudgetWait has passed, or the request is cancelled.
//
// Bounded: the held request counts against the device's own
// MaxSyncsPerDevice (taken before it waits), holds no sync slot and no
// part of the body or work budgets, only its connection; so a device that
// names a seq it never sends stalls nothing of anyone else's, and at most
// for BudgetWait.

// pipeline tracks, per device, the syncs in the handler, and wakes held
// requests when one of them is decided or ends. The zero value is ready.
type pipeline struct {
	mu   gosync.Mutex
	devs map[string]*pipeDevice
}

type pipeDevice struct {
	n       int           // this device's syncs in the handler
	changed chan struct{} // closed (and replaced) when one is decided or ends
}

// pipePoll is how often a held request reads the high-water again without
// being woken: another server process on a shared store may commit the
// seq it follows.
const pipePoll = 20 * time.Millisecond

// pipeGrace is how long a held request alone in the handler waits for the
// request it follows to arrive: sent first, that one may still reach the
// handler second.
const pipeGrace = 250 * time.Millisecond

func (p *pipeline) enter(dev string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.devs == nil {
		p.devs = map[string]*pipeDevice{}
	}
	d := p.devs[dev]
	if d == nil {
		d = &pipeDevice{changed: make(chan struct{})}
		p.devs[dev] = d
	}
	d.n++
	close(d.changed) // a held request may be waiting for this one
	d.changed = make(chan struct{})
}

// leave ends a sync of dev entered with enter.
func (p *pipeline) leave(dev string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.devs[dev]
	close(d.changed)
	d.changed = make(chan struct{})
	if d.n--; d.n <= 0 {
		delete(p.devs, dev)
	}
}

// decided wakes dev's held requests: one of its syncs has been through the
// engine (applied, refused or failed).
func (p *pipeline) decided(dev string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.devs[dev]; d != nil {
		close(d.changed)
		d.changed = make(chan struct{})
	}
}

// state returns how many other syncs of dev are in the handler and the
// channel closed at the next change.
func (p *pipeline) state(dev string) (others int, changed <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.devs[dev]
	if d == nil {
		return 0, nil
	}
	return d.n - 1, d.changed
}

// await holds the calling sync of dev (entered) until the replica's
// high-water (read by hw) reaches after, no other sync of dev is in the
// handler (for pipeGrace), wait has passed or ctx ends. It returns why it stopped holding:
// "ready", "alone" or "timeout"; or ctx's error.
func (p *pipeline) await(ctx context.Context, dev string, after uint64, wait time.Duration, hw func(context.Context) (uint64, error)) (string, error) {
	start := time.Now()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	var tick *time.Ticker
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		others, changed := p.state(dev)
		h, err := hw(ctx)
		if err != nil {
			return "", err
		}
		switch {
		case h >= after:
			return "ready", nil
		case others <= 0 && time.Since(start) >= min(pipeGrace, wait):
			return "alone", nil
		}
		if tick == nil {
			tick = time.NewTicker(pipePoll)
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline.C:
			return "timeout", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// awaitPredecessor holds a pipelined sync request (one with the
// api.HeaderAfterSeq header) of dev and replica until the seq it follows
// is decided; see await. Other requests pass at once.
func (s *Server) awaitPredecessor(c echo.Context, dev string, replica crdt.ReplicaID) error {
	h := c.Request().Header.Get(api.HeaderAfterSeq)
	if h == "" {
		return nil
	}
	after, err := strconv.ParseUint(h, 10, 64)
	if err != nil {
		return problemf(api.CodeBadRequest, "%s: %q is not a seq", api.HeaderAfterSeq, h)
	}
	ctx := c.Request().Context()
	why, err := s.pipe.await(ctx, dev, after, s.cfg.BudgetWait, func(ctx context.Context) (uint64, error) {
		return s.engine.HighWater(ctx, replica)
	})
	if err != nil {
		if ctx.Err() != nil {
			return &Error{Code: api.CodeUnavailable, Detail: "gave up waiting for the request before", Err: err}
		}
		return &Error{Code: api.CodeInternal, Detail: "read high-water", Err: err}
	}
	if why != "ready" {
		s.log.Debug("pipelined sync let through before the seq it follows", "device", dev, "after", after, "why", why)
	}
	return nil
}
