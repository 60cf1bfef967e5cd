package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/doorstep-health/doorstep/internal/pgtest"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/postgres"
)

// BenchmarkCommit is the engine's commit shape: a write transaction doing
// gets reads of keys it may have written and sets writes, with writes
// buffered (sent with COMMIT) and unbuffered (one statement each).
func BenchmarkCommit(b *testing.B) {
	url := pgtest.NewDB(b)
	for _, shape := range []struct{ gets, sets int }{{1, 1}, {20, 20}, {100, 200}} {
		for _, unbuffered := range []bool{false, true} {
			name := fmt.Sprintf("gets=%d/sets=%d/buffered=%v", shape.gets, shape.sets, !unbuffered)
			b.Run(name, func(b *testing.B) {
				kv, err := postgres.Open(context.Background(), url, postgres.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer kv.Close()
				postgres.SetUnbuffered(kv, unbuffered)
				val := make([]byte, 200)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					err := kv.Update(context.Background(), func(tx store.Tx) error {
						for g := 0; g < shape.gets; g++ {
							if _, err := tx.Get([]byte(fmt.Sprintf("k/%d/%d", i, g))); err != nil && !errors.Is(err, store.ErrNotFound) {
								return err
							}
						}
						for s := 0; s < shape.sets; s++ {
							if err := tx.Set([]byte(fmt.Sprintf("k/%d/%d", i, s)), val); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkView is a read-only transaction with one Get.
func BenchmarkView(b *testing.B) {
	url := pgtest.NewDB(b)
	kv, err := postgres.Open(context.Background(), url, postgres.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer kv.Close()
	if err := kv.Update(context.Background(), func(tx store.Tx) error { return tx.Set([]byte("k"), []byte("v")) }); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := kv.View(context.Background(), func(tx store.Tx) error {
			_, err := tx.Get([]byte("k"))
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
