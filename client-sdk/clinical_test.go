package client

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

// TestSetInConflict: with the default schema, a plain Set on a clinical
// field in conflict is refused (ErrInConflict) and stores nothing; on a
// non-clinical field it overwrites only this replica's own value; Resolve
// of the clinical conflict needs a role settled_by lists, and a replica
// never signed in has none.
func TestSetInConflict(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.NoValidation = false; o.Validator = schema.Default() })
	ref := Ref{Team: "wigan", Collection: "people", ID: "p1"}
	if err := r.CreateWithID(ctx, ref, map[string]any{"given_name": "Edith", "family_name": "Jones", "date_of_birth": "1940-01-02", "address": "1 Street"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Set(ctx, ref, "cfs", 5); err != nil {
		t.Fatal(err)
	}
	if err := r.Set(ctx, ref, "phone", "mine"); err != nil {
		t.Fatal(err)
	}
	// Another author's concurrent values arrive (names nothing in pred).
	other := crdt.ReplicaID{9}
	rec, _ := r.GetState(ctx, ref)
	var remote []crdt.Op
	for i, f := range map[string]any{"cfs": 6, "phone": "theirs"} {
		op := crdt.Op{ID: crdt.OpID{Time: rec.Field(i).Live()[0].Time + 1, Replica: other}, Team: ref.Team, Collection: ref.Collection,
			Record: ref.ID, Field: i, Kind: crdt.KindWrite, Value: crdt.MustValue(f)}
		remote = append(remote, op)
	}
	if err := r.ApplyRemote(ctx, remote); err != nil {
		t.Fatal(err)
	}
	before := len(pendingOps(t, r))
	if err := r.Set(ctx, ref, "cfs", 7); !errors.Is(err, ErrInConflict) {
		t.Fatalf("Set on cfs in conflict: %v", err)
	}
	if len(pendingOps(t, r)) != before {
		t.Fatal("refused Set was stored")
	}
	if err := r.Set(ctx, ref, "phone", "mine again"); err != nil {
		t.Fatal(err)
	}
	got, _ := r.Get(ctx, ref)
	var phones []any
	for _, v := range got.Fields["phone"].Values {
		phones = append(phones, v.Value)
	}
	if len(phones) != 2 || !slices.Contains(phones, any("theirs")) || !slices.Contains(phones, any("mine again")) {
		t.Fatalf("phone after Set in conflict: %v", phones)
	}
	if err := r.Resolve(ctx, ref, "cfs", 6); !errors.Is(err, ErrResolveForbidden) {
		t.Fatalf("Resolve without a login: %v", err)
	}
	if ok, err := r.MaySettle("people", "cfs"); ok || err != nil {
		t.Fatalf("MaySettle(cfs) signed out = %v %v", ok, err)
	}
	if ok, _ := r.MaySettle("people", "phone"); !ok {
		t.Fatal("MaySettle(phone) = false")
	}
	if err := r.Resolve(ctx, ref, "phone", "settled"); err != nil {
		t.Fatalf("Resolve of a non-clinical conflict: %v", err)
	}
}
