package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/doorstep-health/doorstep/api"
)

// TestEmptyPagesThatMoveTheCursorAreProgress is issue 16 item 1 on the
// device side: a server that skips the device's own entries may answer
// with empty pages marked more. The cursor moves, so that is progress, and
// Sync must carry on to the end in one call instead of giving up after
// three rounds.
func TestEmptyPagesThatMoveTheCursorAreProgress(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	f.skipOwn = true
	ann := openSynced(t, f, func(o *Options) {
		o.MaxOpsPerChange = 1
		o.MaxChangesPerRequest = 2
		o.PullLimit = 1
	})
	mustSync(t, ann) // bootstrap
	for i := range 30 {
		if err := ann.CreateWithID(ctx, Ref{Team: "wigan", Collection: "people", ID: fmt.Sprint("p", i)}, map[string]any{"name": i}); err != nil {
			t.Fatal(err)
		}
	}
	// Everything is pushed in 15 rounds; the own entries then take
	// the 15 entries the pull lagged behind, as 15 empty pages, to step over.
	res, err := ann.Sync(ctx)
	if err != nil {
		t.Fatalf("sync over own entries: %v (after %d rounds)", err, res.Rounds)
	}
	if res.Pushed != 30 {
		t.Fatalf("pushed %d changes, want 30", res.Pushed)
	}
}

// TestOnlySizeFailuresShrinkRequests is issue 16 item 4: a dropped
// connection or a server error says nothing about size, so it must not
// halve the request sizes; a timeout or body_too_large does.
func TestOnlySizeFailuresShrinkRequests(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	ann := openSynced(t, f, func(o *Options) {
		o.PullLimit = 400
		o.MaxChangesPerRequest = 8
	})
	mustSync(t, ann)
	for range 3 {
		if err := ann.Set(ctx, Ref{Team: "wigan", Collection: "people", ID: "x"}, "n", 1); err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		f.mu.Lock()
		f.dropNext = 1 // the reply is cut: a random loss
		f.mu.Unlock()
		if _, err := ann.Sync(ctx); err == nil {
			t.Fatal("sync with a cut reply succeeded")
		}
	}
	if p, c := ann.requestSize(); p != 400 || c != 8 {
		t.Fatalf("after 3 cut replies: pull limit %d, changes %d; want 400 and 8 unchanged", p, c)
	}
}

// TestSizeSuspect: which failures point at size, and at which direction.
func TestSizeSuspect(t *testing.T) {
	for _, tc := range []struct {
		err        error
		pull, push bool
	}{
		{fmt.Errorf("client: sync: %w", api.NewProblem(api.CodeInternal, "")), false, false},
		{fmt.Errorf("client: sync: %w", api.NewProblem(api.CodeUnavailable, "")), false, false},
		{fmt.Errorf("client: sync: %w", io.ErrUnexpectedEOF), false, false},
		{fmt.Errorf("client: sync: %w", syscall.ECONNREFUSED), false, false},
		{fmt.Errorf("client: sync: %w", syscall.ECONNRESET), false, false},
		{fmt.Errorf("client: sync: %w", api.NewProblem(api.CodeBodyTooLarge, "")), false, true},
		{fmt.Errorf("client: sync: %w", errReplyTooLarge), true, false},
		{&url.Error{Op: "Post", URL: "x", Err: timeoutErr{}}, true, true},
		{fmt.Errorf("client: sync: %w", context.DeadlineExceeded), true, true},
	} {
		pull, push := sizeSuspect(tc.err)
		if pull != tc.pull || push != tc.push {
			t.Errorf("sizeSuspect(%v) = %v, %v; want %v, %v", tc.err, pull, push, tc.pull, tc.push)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestWriteLimits: a write bigger than the server could take is refused at
// write time with a *LimitError, and nothing is stored.
func TestWriteLimits(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.MaxWriteOps, o.MaxValueBytes, o.MaxWriteBytes = 10, 100, 600 })
	var le *LimitError
	err := r.Batch(ctx, func(b *Batch) error {
		for i := range 11 {
			if _, err := b.Create(Ref{Team: "wigan", Collection: "people"}, map[string]any{"n": i}); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrInvalid) || !errors.As(err, &le) || le.Limit != 10 {
		t.Fatalf("11 ops in one write: %v", err)
	}
	if _, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"n": strings.Repeat("x", 101)}); !errors.As(err, &le) || le.Field != "n" {
		t.Fatalf("101-byte value: %v", err)
	}
	err = r.Batch(ctx, func(b *Batch) error {
		for i := range 8 {
			if _, err := b.Create(Ref{Team: "wigan", Collection: "people"}, map[string]any{"n": strings.Repeat("y", 90) + fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.As(err, &le) || le.What != "bytes in one write" {
		t.Fatalf("8 × 90-byte values: %v", err)
	}
	if ops, _ := r.PendingOps(ctx); len(ops) != 0 {
		t.Fatalf("%d ops stored by refused writes", len(ops))
	}
}

// TestRequestsStayUnderTheServersValueLimit: a request never carries more
// ops than keep its msgpack values under the server's default limit (the
// SDK splits what it sends), whatever MaxChangesPerRequest says.
func TestRequestsStayUnderTheServersValueLimit(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.MaxOpsPerChange = 9000; o.MaxChangesPerRequest = 8 })
	for b := range 3 {
		err := r.Batch(ctx, func(bt *Batch) error {
			for i := range 9000 {
				if err := bt.CreateWithID(Ref{Team: "t", Collection: "c", ID: fmt.Sprint(b, "-", i)}, map[string]any{"n": i}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := r.seal(); err != nil {
		t.Fatal(err)
	}
	changes, err := r.loadChanges(0, 8)
	if err != nil {
		t.Fatal(err)
	}
	ops := 0
	for _, c := range changes {
		ops += c.n
	}
	if len(changes) != 2 || ops != 18000 {
		t.Fatalf("first request: %d changes, %d ops; want 2 changes of 9000 (under %d ops)", len(changes), ops, maxRequestOps)
	}
}
