package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/server"
)

// widePerson is a person with a dozen filled text fields, so a batch of
// them makes a big change.
func widePerson(i int) map[string]any {
	p := sdkPerson(fmt.Sprint("W", i))
	long := strings.Repeat("notes ", 12)
	for _, f := range []string{"preferred_name", "temporary_address", "phone", "email", "communication_needs", "household_notes", "risk_notes"} {
		p[f] = fmt.Sprint(f, " ", i, " ", long)[:min(40, len(f)+len(long))]
	}
	return p
}

// TestSDKLargePushCompletesInOneSync is issue 16 item 1 end to end: a
// tablet pushes many big batches against a server with small pages. The
// pull after the push steps over the tablet's own entries; that used to
// fill the page budget and return empty pages marked more until Sync
// failed with "no progress". One Sync must now finish the job.
func TestSDKLargePushCompletesInOneSync(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, nil, func(c *server.Config) { c.PageBytes = 4 << 10 })
	ann := e.device("ann", "", func(o *client.Options) { o.PullLimit = 50; o.MaxOpsPerChange = 100 })
	bea := e.device("bea", "", nil)
	sdkMustSync(t, ann)
	for b := range 12 {
		err := ann.Batch(ctx, func(bt *client.Batch) error {
			for i := range 10 {
				if _, err := bt.Create("people", sdkTeam, widePerson(b*10+i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	res := sdkMustSync(t, ann)
	if res.Pushed != 12 || ann.Status().Pending != 0 {
		t.Fatalf("push: %+v, pending %d", res, ann.Status().Pending)
	}
	sdkMustSync(t, bea)
	sdkAssertConverged(t, ann, bea)
	t.Logf("ann: %d rounds for 12 changes", res.Rounds)
}
