package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/server"
)

// BenchmarkAttachment measures attachment throughput through the SDK and
// the real HTTP server on loopback (no rate limit): Upload is
// UploadAttachments of one freshly attached 20 MiB photo (HEAD, 4 MiB
// PATCHes, each fsynced, hash check), Download is FetchAttachment of it on
// another tablet (GET, hash check, stored encrypted in the replica).
func BenchmarkAttachment(b *testing.B) {
	ctx := context.Background()
	env := newSDKEnv(b, nil, func(c *server.Config) { c.DeviceRate = -1 })
	ann := env.device("ann", "", nil)
	visit := client.Ref{Team: sdkTeam, Collection: "contacts", ID: "c-bench"}
	if err := ann.CreateWithID(ctx, visit, map[string]any{"person_id": "p-bench", "contact_type": "home_visit"}); err != nil {
		b.Fatal(err)
	}
	photo := func() []byte {
		p := make([]byte, 20<<20)
		if _, err := rand.Read(p); err != nil {
			b.Fatal(err)
		}
		copy(p, []byte{0xff, 0xd8, 0xff, 0xe0})
		return p
	}
	b.Run("Upload", func(b *testing.B) {
		b.SetBytes(20 << 20)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			if _, err := ann.Attach(ctx, visit, "photos", bytes.NewReader(photo()), fmt.Sprint("p", i)); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if n, err := ann.UploadAttachments(ctx); err != nil || n != 1 {
				b.Fatalf("upload %d %v", n, err)
			}
		}
	})
	a, err := ann.Attach(ctx, visit, "photos", bytes.NewReader(photo()), "dl")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ann.UploadAttachments(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("Download", func(b *testing.B) {
		b.SetBytes(20 << 20)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			bea := env.device("bea", "", nil)
			b.StartTimer()
			if err := bea.FetchAttachment(ctx, visit, a); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			bea.Close()
			b.StartTimer()
		}
	})
}
