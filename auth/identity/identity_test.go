package identity

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/crdt"
)

func TestClaimsReplicaIsTheParsedDevice(t *testing.T) {
	r := crdt.ReplicaID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	if got := (&Claims{Device: r.String()}).Replica(); got != r {
		t.Fatalf("Replica = %s, want %s", got, r)
	}
	for _, bad := range []string{"", "zz", r.String()[:30], r.String() + "00"} {
		if got := (&Claims{Device: bad}).Replica(); !got.IsZero() {
			t.Errorf("Replica of device %q = %s, want the zero ID", bad, got)
		}
	}
}

func TestLockedErrorIsAccountLocked(t *testing.T) {
	var err error = &LockedError{RetryAfter: 90 * time.Second}
	if !errors.Is(err, ErrAccountLocked) {
		t.Fatal("a *LockedError does not match ErrAccountLocked")
	}
	if got, want := err.Error(), "auth: account locked after failed logins; try again in 1m30s"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestActorScope(t *testing.T) {
	admin := Actor{UserID: "a1", Role: "admin", Teams: []string{"wigan"}}
	both := User{ID: "u1", Teams: []string{"wigan", "ashton"}}
	former := User{ID: "u2", FormerTeams: []string{"ashton"}}
	never := User{ID: "u3"}
	cases := []struct {
		name         string
		a            Actor
		u            User
		sees, covers bool
	}{
		{"team admin, shared team", admin, both, true, false},
		{"team admin, former team elsewhere", admin, former, false, false},
		{"team admin, never in a team", admin, never, true, true},
		{"service admin", ServiceActor("op"), both, true, true},
		{"internal call", Actor{}, former, true, true},
	}
	for _, c := range cases {
		if got := c.a.Sees(c.u); got != c.sees {
			t.Errorf("%s: Sees = %v, want %v", c.name, got, c.sees)
		}
		if got := c.a.Covers(c.u); got != c.covers {
			t.Errorf("%s: Covers = %v, want %v", c.name, got, c.covers)
		}
	}
	if got := ActorFrom(WithActor(context.Background(), admin)); got.ID() != "a1" || !got.Scoped() {
		t.Errorf("ActorFrom(WithActor(admin)) = %+v", got)
	}
	if id := ActorFrom(context.Background()).ID(); id != "system" {
		t.Errorf("the zero actor's ID = %q, want system", id)
	}
	if id := ServiceActor("op").ID(); id != "service" {
		t.Errorf("ServiceActor's ID = %q, want service", id)
	}
}
