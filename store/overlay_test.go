package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/memory"
)

// TestOverlayCopiesAndExpires: an overlay keeps copies of what it was
// given (the caller may reuse its buffers once Set returns), a key set
// with a TTL reads as absent from its expiry, through Get and iteration,
// and a delete hides the snapshot's value.
func TestOverlayCopiesAndExpires(t *testing.T) {
	kv := memory.New(memory.Options{})
	defer kv.Close()
	ctx := context.Background()
	if err := kv.Update(ctx, func(tx store.Tx) error {
		for _, k := range []string{"k/1", "k/2", "k/3"} {
			if err := tx.Set([]byte(k), []byte("snapshot")); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	under := store.NewOverlay(0)
	store.SetOverlayClock(under, func() time.Time { return now })
	key, val := []byte("k/1"), []byte("under")
	under.Set(key, val, 0)
	copy(key, "k/9")
	copy(val, "XXXXX")
	under.Set([]byte("k/2"), []byte("short-lived"), 2*time.Second)
	under.Delete([]byte("k/3"))
	own := store.NewOverlay(0)

	err := kv.View(ctx, func(tx store.Tx) error {
		read := func(k string) string {
			v, err := under.Get(own, []byte(k), tx.Get)
			if errors.Is(err, store.ErrNotFound) {
				return "(absent)"
			}
			if err != nil {
				t.Fatal(err)
			}
			return string(v)
		}
		scan := func() []string {
			it := under.Iterate(own, tx.Iterate(store.IterOptions{Prefix: []byte("k/")}), store.IterOptions{Prefix: []byte("k/")})
			defer it.Close()
			var out []string
			for it.Rewind(); it.Valid(); it.Next() {
				v, err := it.Value()
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, string(it.Key())+"="+string(v))
			}
			return out
		}
		if got := read("k/1"); got != "under" {
			t.Errorf("k/1 = %q after the caller reused its buffers, want %q", got, "under")
		}
		if got := read("k/9"); got != "(absent)" {
			t.Errorf("k/9 = %q, want absent", got)
		}
		if got := read("k/2"); got != "short-lived" {
			t.Errorf("k/2 = %q before expiry", got)
		}
		if got := read("k/3"); got != "(absent)" {
			t.Errorf("k/3 = %q, want absent (deleted)", got)
		}
		if got, want := scan(), []string{"k/1=under", "k/2=short-lived"}; !equalStrings(got, want) {
			t.Errorf("scan before expiry: %q, want %q", got, want)
		}
		now = now.Add(2 * time.Second)
		if got := read("k/2"); got != "(absent)" {
			t.Errorf("k/2 = %q at expiry, want absent (the snapshot's value is overwritten)", got)
		}
		if got, want := scan(), []string{"k/1=under"}; !equalStrings(got, want) {
			t.Errorf("scan at expiry: %q, want %q", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
