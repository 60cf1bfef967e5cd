package client

import (
	"cmp"
	"slices"
	gosync "sync"
)

// Event tells a subscriber which records changed locally, by a local write
// or a pull. Events coalesce: while a subscriber has not taken its last
// event, further changes accumulate into the next one, so a slow subscriber
// gets fewer, larger events and never holds up writes or sync.
type Event struct {
	Records []Ref // sorted, distinct
}

type subscriber struct {
	mu      gosync.Mutex
	pending map[Ref]struct{}
	signal  chan struct{} // capacity 1: pending is non-empty
	done    chan struct{}
	out     chan Event
}

// Subscribe returns a channel of change events and a function that ends the
// subscription and closes the channel. Close also closes it. Each
// subscription has one goroutine, which hands over at most one event at a
// time (see Event for coalescing).
func (r *Replica) Subscribe() (<-chan Event, func()) {
	s := &subscriber{
		pending: map[Ref]struct{}{},
		signal:  make(chan struct{}, 1),
		done:    make(chan struct{}),
		out:     make(chan Event),
	}
	r.subsMu.Lock()
	if r.closed() {
		r.subsMu.Unlock()
		close(s.out)
		return s.out, func() {}
	}
	r.subs[s] = struct{}{}
	r.wg.Add(1)
	r.subsMu.Unlock()
	go func() {
		defer r.wg.Done()
		defer close(s.out)
		for {
			select {
			case <-s.done:
				return
			case <-r.closeCtx.Done():
				return
			case <-s.signal:
			}
			s.mu.Lock()
			ev := Event{Records: make([]Ref, 0, len(s.pending))}
			for ref := range s.pending {
				ev.Records = append(ev.Records, ref)
			}
			clear(s.pending)
			s.mu.Unlock()
			if len(ev.Records) == 0 {
				continue
			}
			slices.SortFunc(ev.Records, compareRef)
			select {
			case s.out <- ev:
			case <-s.done:
				return
			case <-r.closeCtx.Done():
				return
			}
		}
	}()
	var once gosync.Once
	return s.out, func() {
		once.Do(func() {
			r.subsMu.Lock()
			delete(r.subs, s)
			r.subsMu.Unlock()
			close(s.done)
		})
	}
}

func compareRef(a, b Ref) int {
	return cmp.Or(cmp.Compare(a.Team, b.Team), cmp.Compare(a.Collection, b.Collection), cmp.Compare(a.ID, b.ID))
}

// notify hands changed records to every subscriber without blocking.
func (r *Replica) notify(refs []Ref) {
	r.subsMu.Lock()
	defer r.subsMu.Unlock()
	for s := range r.subs {
		s.mu.Lock()
		for _, ref := range refs {
			s.pending[ref] = struct{}{}
		}
		s.mu.Unlock()
		select {
		case s.signal <- struct{}{}:
		default:
		}
	}
}
