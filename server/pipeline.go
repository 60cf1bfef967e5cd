package server

import (
	"context"
	"net/http"
	"strconv"
	gosync "sync"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// Pipelined pushes (docs/PROTOCOL.md "Pipelined pushes"). A device may
// send its next push while the one before is still in flight, naming in
// the api.HeaderAfterSeq header the last seq it pushed in that one. The
// engine applies a replica's changes strictly in seq order and refuses a
// later one with seq_gap, so such a request is held back here until the
// seq it follows is decided:
//
//   - the replica's high-water reaches it (the one before committed), or
//   - no other sync of the device has been in the handler for a short
//     grace (the one before ended without applying it, or never arrived:
//     the engine then answers seq_gap and the device falls back to one
//     request at a time), or
//   - Config.BudgetWait has passed since it arrived, or the request is
//     cancelled.
//
// Held decoded. So that the server prepares a pipelined push while the
// one before it commits (the request's own CPU work: body, decode,
// prechecks, runs merged ahead; sync.Engine.PrepareSync), a held request
// is read, decoded and prepared first and waits only before its commit,
// when both of these hold:
//
//   - every other sync of the device in the handler has its body and its
//     work budget (so the held request, which keeps its own while it
//     waits, never stands between the request it follows and that one's
//     memory), and
//   - its bytes fit the hold bounds: a device's held requests hold at
//     most Config.PipelineHoldBytes (the larger of the body as sent,
//     reserved from its Content-Length before it is read, and decoded),
//     and all devices' together at most holdTotal (half the work budget's
//     worth: SyncMemoryBudget / (2 × SyncMemoryFactor)).
//
// Otherwise it waits as before: before its body is read (or, if only its
// decoded size does not fit, with its body as sent, within the bytes
// reserved for it, before decoding). While it waits it holds its
// connection, its per-device sync, its budget and its reservation, and
// no sync slot and no large-sync slot.
//
// Bounded: the held request counts against the device's own
// MaxSyncsPerDevice (taken before it waits), and what it holds decoded
// against the hold bounds, so a device that names a seq it never sends
// stalls nothing of anyone else's (at worst it takes its share of the
// bytes held, and other held requests wait before their bodies), and at
// most for BudgetWait.

// pipeline tracks, per device, the syncs in the handler, and wakes held
// requests when one of them is decided, has its body or ends. The zero
// value is ready and holds nothing decoded (holdMax 0).
type pipeline struct {
	// holdMax is the bytes one device's held requests may hold (0: none
	// is held decoded), holdTotal all devices' together.
	holdMax, holdTotal int64

	mu   gosync.Mutex
	devs map[string]*pipeDevice
	held int64 // all devices' held bytes
}

type pipeDevice struct {
	n        int           // this device's syncs in the handler
	unbodied int           // of which those without their body and work budget yet
	held     int64         // bytes its held requests hold
	changed  chan struct{} // closed (and replaced) when one is decided, has its body or ends
}

// pipeSync is one sync of a device in the handler (enter).
type pipeSync struct {
	dev    string
	bodied bool          // has its body and work budget
	held   int64         // bytes reserved (reserve)
	waited time.Duration // in awaitPredecessor, in all
}

// pipePoll is how often a held request reads the high-water again without
// being woken: another server process on a shared store may commit the
// seq it follows.
const pipePoll = 20 * time.Millisecond

// pipeGrace is how long a held request alone in the handler waits for the
// request it follows to arrive: sent first, that one may still reach the
// handler second.
const pipeGrace = 250 * time.Millisecond

// enter registers a sync of dev in the handler; leave ends it.
func (p *pipeline) enter(dev string) *pipeSync {
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
	d.unbodied++
	d.wake() // a held request may be waiting for this one
	return &pipeSync{dev: dev}
}

func (d *pipeDevice) wake() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// leave ends a sync entered with enter, giving back what it reserved.
func (p *pipeline) leave(s *pipeSync) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.devs[s.dev]
	p.unreserveLocked(d, s)
	if !s.bodied {
		d.unbodied--
	}
	d.wake()
	if d.n--; d.n <= 0 {
		delete(p.devs, s.dev)
	}
}

// bodied records that s has its body and work budget.
func (p *pipeline) bodied(s *pipeSync) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !s.bodied {
		s.bodied = true
		d := p.devs[s.dev]
		d.unbodied--
		d.wake()
	}
}

// reserve grows s's held bytes to n if both hold bounds allow it and
// reports whether s holds n bytes (or more) now.
func (p *pipeline) reserve(s *pipeSync, n int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holdMax <= 0 {
		return false
	}
	if n <= s.held {
		return true
	}
	d, more := p.devs[s.dev], n-s.held
	if d.held+more > p.holdMax || p.held+more > p.holdTotal {
		return false
	}
	d.held += more
	p.held += more
	s.held = n
	return true
}

// heldBytes returns all devices' held bytes.
func (p *pipeline) heldBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

// unreserve gives back s's held bytes.
func (p *pipeline) unreserve(s *pipeSync) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unreserveLocked(p.devs[s.dev], s)
}

func (p *pipeline) unreserveLocked(d *pipeDevice, s *pipeSync) {
	d.held -= s.held
	p.held -= s.held
	s.held = 0
}

// decided wakes dev's held requests: one of its syncs has been through the
// engine's push (applied, refused or failed).
func (p *pipeline) decided(dev string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.devs[dev]; d != nil {
		d.wake()
	}
}

// state returns how many other syncs of s's device are in the handler,
// how many of those lack their body, and the channel closed at the next
// change.
func (p *pipeline) state(s *pipeSync) (others, unbodied int, changed <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.devs[s.dev]
	unbodied = d.unbodied
	if !s.bodied {
		unbodied--
	}
	return d.n - 1, unbodied, d.changed
}

// Why a held request stopped waiting (await).
const (
	pipeReady   = "ready"   // the high-water reached the seq it follows
	pipeAlone   = "alone"   // no other sync of the device in the handler, for the grace
	pipeTimeout = "timeout" // the wait's deadline passed
	pipeBodied  = "bodied"  // (untilBodied) every other sync of the device has its body
)

// await holds the calling sync s (entered) until the replica's high-water
// (read by hw) reaches after, no other sync of its device has been in the
// handler for pipeGrace since arrived, deadline passes or ctx ends; with
// untilBodied also until every other sync of the device in the handler
// (at least one) has its body and work budget. It returns why it stopped
// holding (pipeReady...), or ctx's error.
func (p *pipeline) await(ctx context.Context, s *pipeSync, after uint64, arrived, deadline time.Time, untilBodied bool, hw func(context.Context) (uint64, error)) (string, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	grace := min(pipeGrace, deadline.Sub(arrived))
	var tick *time.Ticker
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		others, unbodied, changed := p.state(s)
		if untilBodied && others > 0 && unbodied <= 0 {
			// Before the high-water is read: a store's read may wait for
			// the commit in progress (Badger's does), which is the one
			// this request is to be prepared during.
			return pipeBodied, nil
		}
		h, err := hw(ctx)
		if err != nil {
			return "", err
		}
		switch {
		case h >= after:
			return pipeReady, nil
		case others <= 0 && time.Since(arrived) >= grace:
			return pipeAlone, nil
		case !time.Now().Before(deadline):
			return pipeTimeout, nil
		}
		if tick == nil {
			tick = time.NewTicker(pipePoll)
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-timer.C:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// afterSeq returns the seq a pipelined sync request follows (its
// api.HeaderAfterSeq header) and whether it is one.
func afterSeq(r *http.Request) (uint64, bool, error) {
	h := r.Header.Get(api.HeaderAfterSeq)
	if h == "" {
		return 0, false, nil
	}
	after, err := strconv.ParseUint(h, 10, 64)
	if err != nil {
		return 0, false, problemf(api.CodeBadRequest, "%s: %q is not a seq", api.HeaderAfterSeq, h)
	}
	return after, true, nil
}

// awaitPredecessor holds sync ps of a pipelined request of replica,
// following seq after and arrived at arrived, until the seq it follows is
// decided (or, with untilBodied, the device's other syncs have their
// bodies); see await. The wait ends BudgetWait after arrival.
func (s *Server) awaitPredecessor(ctx context.Context, ps *pipeSync, replica crdt.ReplicaID, after uint64, arrived time.Time, untilBodied bool) (string, error) {
	start := time.Now()
	why, err := s.pipe.await(ctx, ps, after, arrived, arrived.Add(s.cfg.BudgetWait), untilBodied, func(ctx context.Context) (uint64, error) {
		// Taken by the committer is enough: what is queued after it
		// applies after it (sync.Engine.OrderedHighWater).
		return s.engine.OrderedHighWater(ctx, replica)
	})
	ps.waited += time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			return "", &Error{Code: api.CodeUnavailable, Detail: "gave up waiting for the request before", Err: err}
		}
		return "", &Error{Code: api.CodeInternal, Detail: "read high-water", Err: err}
	}
	if why == pipeAlone || why == pipeTimeout {
		s.log.Debug("pipelined sync let through before the seq it follows", "device", ps.dev, "after", after, "why", why)
	}
	return why, nil
}

// holdBeforeBody holds sync ps of a pipelined request before its body is
// read, until the seq it follows is decided or, if the request may be
// held decoded (holdMax, a declared length cl within it), until every
// other sync of the device has its body; then it reserves cl bytes for
// the body and reports true, or, without room, goes on waiting as
// awaitPredecessor does and reports false.
func (s *Server) holdBeforeBody(ctx context.Context, ps *pipeSync, replica crdt.ReplicaID, after uint64, arrived time.Time, cl int64) (held bool, err error) {
	why, err := s.awaitPredecessor(ctx, ps, replica, after, arrived, s.pipe.holdMax > 0 && cl >= 0 && cl <= s.pipe.holdMax)
	if err != nil || why != pipeBodied {
		return false, err
	}
	if s.pipe.reserve(ps, cl) {
		return true, nil
	}
	_, err = s.awaitPredecessor(ctx, ps, replica, after, arrived, false)
	return false, err
}

// holdDecoded grows the reservation of a held request whose body is read
// (holdBeforeBody) to its decoded size and reports true, or, without
// room, waits for the seq it follows before the body is decoded and
// reports false.
func (s *Server) holdDecoded(ctx context.Context, ps *pipeSync, replica crdt.ReplicaID, after uint64, arrived time.Time, size int64) (held bool, err error) {
	if s.pipe.reserve(ps, size) {
		return true, nil
	}
	_, err = s.awaitPredecessor(ctx, ps, replica, after, arrived, false)
	return false, err
}
