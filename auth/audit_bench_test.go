package auth

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// BenchmarkAuditAppend measures one durable audit append (an fsync'd
// Badger commit), the cost a review read or an admin request adds.
func BenchmarkAuditAppend(b *testing.B) {
	s, _ := openTest(b, nil)
	ctx := WithActor(context.Background(), Actor{UserID: "u1", Name: "Cat", Role: "coordinator", Teams: []string{"wigan"}})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Audit(ctx, AuditEntry{Action: "record.read", Team: "wigan", TargetKind: "record", TargetID: fmt.Sprint("people/p", i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuditAppendParallel is the same from 8 goroutines (appends are
// serialised by the audit lock).
func BenchmarkAuditAppendParallel(b *testing.B) {
	s, _ := openTest(b, nil)
	ctx := WithActor(context.Background(), Actor{UserID: "u1", Name: "Cat", Role: "coordinator", Teams: []string{"wigan"}})
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Audit(ctx, AuditEntry{Action: "record.read", Team: "wigan", TargetKind: "record", TargetID: "people/p1"}); err != nil {
				b.Error(err)
			}
		}
	})
}

// BenchmarkAuditLogScan measures reading a 1,000-entry page of a 20,000-entry
// trail, filtered by team scope (half the entries match).
func BenchmarkAuditLogScan(b *testing.B) {
	s, _ := openTest(b, nil)
	ctx := context.Background()
	for i := 0; i < 20_000; i += 1000 {
		err := s.auditUpdate(ctx, func(_ store.Tx, add func(AuditEntry) error) error {
			for j := i; j < i+1000; j++ {
				team := "wigan"
				if j%2 == 1 {
					team = "ashton"
				}
				if err := add(AuditEntry{ActorID: "u1", Action: "record.read", Team: team, TargetID: fmt.Sprint("people/p", j)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		es, _, _, err := s.AuditLog(ctx, AuditQuery{Scope: []string{"wigan"}, Limit: 1000})
		if err != nil || len(es) != 1000 {
			b.Fatal(len(es), err)
		}
	}
}

// BenchmarkAuthorize measures the per-request check of an access token's
// device and user (Authorize: one read-only transaction, two reads), per
// backend.
func BenchmarkAuthorize(b *testing.B) {
	for _, name := range slices.Sorted(maps.Keys(kvBackends())) {
		b.Run(name, benchAuthorize)
	}
}

func benchAuthorize(b *testing.B) {
	s, _ := openTest(b, nil)
	ctx := context.Background()
	if _, err := s.CreateTeam(ctx, "wigan", "Wigan"); err != nil {
		b.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, NewUser{Username: "ann", Password: "correct horse", Role: "link_worker", Teams: []string{"wigan"}}); err != nil {
		b.Fatal(err)
	}
	tr, err := s.Login(ctx, "ann", "correct horse", crdt.NewReplicaID().String(), "")
	if err != nil {
		b.Fatal(err)
	}
	c, err := s.Verify(tr.AccessToken)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cl := *c
			if _, err := s.Authorize(ctx, &cl); err != nil {
				b.Error(err)
			}
		}
	})
}
