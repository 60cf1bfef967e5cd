package e2e

import (
	"context"
	"fmt"
	"testing"

	client "github.com/doorstep-health/doorstep/client-sdk"
)

// TestPushOverManyRoundsWithWritesDuringSync: a push of many rounds, in
// which the device prepares each next round while the server commits the
// current one (client-sdk/prefetch.go), with the app writing all along,
// delivers every op exactly once: the outbox ends empty and a second
// device converges with the first.
func TestPushOverManyRoundsWithWritesDuringSync(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, nil)
	small := func(o *client.Options) { o.MaxChangesPerRequest, o.MaxOpsPerChange = 2, 40 }
	ann := e.device("ann", "", small)
	bea := e.device("bea", "", nil)
	refs := sdkSeedPeople(t, ann, 20)
	write := func(round int) {
		for i, ref := range refs {
			if err := ann.Set(ctx, ref, "phone", fmt.Sprintf("01942 %03d%03d", round, i)); err != nil {
				t.Error(err)
				return
			}
			if err := ann.Append(ctx, ref, "case_notes", fmt.Sprintf("round %d note %d", round, i)); err != nil {
				t.Error(err)
				return
			}
		}
	}
	write(0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for round := 1; round <= 5; round++ {
			write(round)
		}
	}()
	rounds := 0
	for {
		res := sdkMustSync(t, ann)
		rounds += res.Rounds
		select {
		case <-done:
		default:
			continue
		}
		break
	}
	res := sdkMustSync(t, ann) // what the last writes left
	rounds += res.Rounds
	if ops, err := ann.PendingOps(ctx); err != nil || len(ops) != 0 {
		t.Fatalf("%d ops pending after the final sync (%v)", len(ops), err)
	}
	if rounds < 10 {
		t.Fatalf("push took %d rounds; the test wants many", rounds)
	}
	sdkMustSync(t, bea)
	sdkAssertConverged(t, ann, bea)
}
