package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/doorstep-health/doorstep/api"
)

// Status is what an app can show about sync.
type Status struct {
	Pending       int       // ops written locally and not yet acknowledged
	LastSuccess   time.Time // end of the last Sync that succeeded
	LastError     error     // error of the last Sync, nil after a success
	LastErrorCode api.Code  // its stable code, when the server sent one
	Syncing       bool      // a Sync is running
	SignedOut     bool      // sync stopped until Login
	Bootstrapping bool      // a new device is still receiving its snapshot
	// RecordsReceived counts snapshot records received by the bootstrap
	// in progress or last finished.
	RecordsReceived int
	// Rejected counts ops the server quarantined or refused since Open
	// (see Rejected for the ops).
	Rejected int
	// NextSync is when the background loop will next sync unless a write
	// or NetworkUp comes first (zero when no loop runs): after a failure,
	// the end of the backoff, so the app can show "retrying in 30 s".
	NextSync time.Time
	// Failures counts the background loop's consecutive failed syncs.
	Failures int
	// ServerRestored is when this device last found the server restored
	// from a backup (a new epoch) and re-sent its records (see epoch.go);
	// Restated counts the records the server took back from it.
	ServerRestored time.Time
	Restated       int
}

// Status returns the current sync status.
func (r *Replica) Status() Status {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	return r.status
}

func (r *Replica) setStatus(f func(*Status)) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	f(&r.status)
}

// Background starts a goroutine that syncs after local writes, when the app
// calls NetworkUp, and every PollInterval. After a failure it waits with
// exponential backoff and jitter (MinBackoff doubling to MaxBackoff; each
// wait is uniformly random between half and all of the step); writes do not
// cut a backoff short, NetworkUp does. It stops when ctx is done, when the
// replica is closed, or when sync returns ErrSignedOut (Status().SignedOut
// then says so; call Login and Background again). At most one background
// loop runs per replica.
func (r *Replica) Background(ctx context.Context) error {
	if r.serverURL() == "" {
		return ErrNoServer
	}
	r.bgMu.Lock()
	defer r.bgMu.Unlock()
	if r.closed() {
		return ErrClosed
	}
	if r.bgRunning {
		return ErrBusy
	}
	r.bgRunning = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			r.setStatus(func(s *Status) { s.NextSync = time.Time{} })
			r.bgMu.Lock()
			r.bgRunning = false
			r.bgMu.Unlock()
		}()
		r.loop(ctx)
	}()
	return nil
}

// NetworkUp tells the replica the network is back: the background loop
// syncs at once, forgetting any backoff.
func (r *Replica) NetworkUp() {
	select {
	case r.netUp <- struct{}{}:
	default:
	}
}

// trigger wakes the background loop after a local write.
func (r *Replica) trigger() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Replica) loop(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.closeCtx, cancel)
	defer stop()
	failures := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		kick := r.kick
		if failures > 0 {
			kick = nil // a write does not cut a backoff short
		}
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-kick:
		case <-r.netUp:
			failures = 0
		}
		r.setStatus(func(s *Status) { s.NextSync = time.Time{} })
		_, err := r.Sync(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrSignedOut) {
			r.log.Warn("background sync stopped: signed out", "err", err)
			return
		}
		wait := r.opts.PollInterval
		if err != nil {
			failures++
			wait = backoff(r.opts.MinBackoff, r.opts.MaxBackoff, failures)
		} else {
			failures = 0
		}
		next := r.opts.Wall().Add(wait)
		r.setStatus(func(s *Status) { s.NextSync, s.Failures = next, failures })
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// backoff returns the wait after n consecutive failures: min·2^(n-1)
// capped at max, then uniformly jittered into [step/2, step].
func backoff(min, max time.Duration, n int) time.Duration {
	step := min
	for i := 1; i < n && step < max; i++ {
		step *= 2
	}
	if step > max {
		step = max
	}
	half := step / 2
	return half + time.Duration(rand.Int64N(int64(step-half)+1))
}
