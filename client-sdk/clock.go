package client

// The clock: the corrected wall clock the HLC reads and the rule that
// corrects it from the server's clock (see "Clock" in the package doc).

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/doorstep-health/doorstep/crdt"
)

// reading returns the clock's current reading for a request without
// issuing a timestamp: a request must not advance the HLC, or a tablet whose
// clock is hours fast would be stuck hours ahead even after the server's
// reply corrects its offset.
func (r *Replica) reading() crdt.Timestamp {
	return max(r.clock.Last(), crdt.MakeTimestamp(r.now().UnixMilli(), 0))
}

// adjustClock applies the clock rule (see the package doc): if the device's
// wall clock disagrees with the server's by more than ClockTolerance, keep
// the difference as an offset; then merge the server's HLC.
func (r *Replica) adjustClock(server crdt.Timestamp) {
	if server == 0 {
		return
	}
	diff := server.Time().Sub(r.opts.Wall())
	r.offsetMu.Lock()
	old := r.offset
	if diff > r.opts.ClockTolerance || diff < -r.opts.ClockTolerance {
		r.offset = diff
	} else {
		r.offset = 0
	}
	off := r.offset
	r.offsetMu.Unlock()
	if off != old {
		r.log.Info("clock offset from server", "offset", off)
	}
	if err := r.clock.Update(server); err != nil {
		r.log.Warn("server clock not adopted", "err", err)
	}
}

// now is the corrected wall clock the HLC reads: the device's wall clock
// plus the offset learned from the server, never earlier than the floor.
func (r *Replica) now() time.Time {
	r.offsetMu.Lock()
	off, floor := r.offset, r.floor
	r.offsetMu.Unlock()
	t := r.opts.Wall().Add(off)
	if t.Before(floor) {
		return floor
	}
	return t
}

// ClockOffset returns the correction currently added to the device's wall
// clock (see the package doc).
func (r *Replica) ClockOffset() time.Duration {
	r.offsetMu.Lock()
	defer r.offsetMu.Unlock()
	return r.offset
}

// sleep waits d, or until ctx is done (returning its error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// jitter returns d plus up to a tenth more, so that devices told to wait
// the same time do not all come back at once.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d/10)+1))
}
