package client

import (
	"bytes"
	"errors"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func zstdBytes(t testing.TB, b []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, append([]zstd.EOption{zstd.WithEncoderConcurrency(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// TestInflateReplyBounds: a reply is decoded in its coding up to the
// bound and no further: a bomb gets errReplyTooLarge after at most
// max+1 bytes of output, in gzip as in zstd.
func TestInflateReplyBounds(t *testing.T) {
	body := bytes.Repeat([]byte("doorstep "), 1000)
	gz, err := gzipBody(body)
	if err != nil {
		t.Fatal(err)
	}
	zs := zstdBytes(t, body)
	for _, tc := range []struct {
		enc  string
		wire []byte
	}{{"", body}, {"identity", body}, {"gzip", gz}, {"GZIP", gz}, {"zstd", zs}, {" zstd", zs}} {
		got, err := inflateReply(tc.enc, tc.wire, int64(len(body)))
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("%q: %d bytes, %v", tc.enc, len(got), err)
		}
		if tc.enc == "" || tc.enc == "identity" {
			continue // the wire bound (readBounded before) covers these
		}
		if _, err := inflateReply(tc.enc, tc.wire, int64(len(body))-1); !errors.Is(err, errReplyTooLarge) {
			t.Errorf("%q one byte over the bound: %v, want errReplyTooLarge", tc.enc, err)
		}
	}
	// Bombs: 32 MiB of zeros, a few KiB on the wire, against a 1 MiB bound.
	zeros := make([]byte, 32<<20)
	zbomb := zstdBytes(t, zeros)
	var gbomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gbomb, gzip.BestCompression)
	zw.Write(zeros)
	zw.Close()
	for enc, bomb := range map[string][]byte{"zstd": zbomb, "gzip": gbomb.Bytes()} {
		if len(bomb) > 1<<20 {
			t.Fatalf("%s bomb of %d bytes", enc, len(bomb))
		}
		if _, err := inflateReply(enc, bomb, 1<<20); !errors.Is(err, errReplyTooLarge) {
			t.Errorf("%s bomb: %v, want errReplyTooLarge", enc, err)
		}
	}
	// A frame that asks for a window over RFC 9659's 8 MiB is refused
	// rather than allocated.
	big := zstdBytes(t, zeros[:32<<20], zstd.WithWindowSize(32<<20), zstd.WithSingleSegment(false))
	if _, err := inflateReply("zstd", big, 64<<20); err == nil || errors.Is(err, errReplyTooLarge) {
		t.Errorf("zstd with a 32 MiB window: %v, want a decode error", err)
	}
	for _, enc := range []string{"br", "deflate", "zstd, gzip"} {
		if _, err := inflateReply(enc, body, 1<<20); err == nil {
			t.Errorf("Content-Encoding %q: no error", enc)
		}
	}
	if _, err := inflateReply("zstd", gz, 1<<20); err == nil {
		t.Error("gzip bytes labelled zstd: no error")
	}
}

// FuzzInflateReply: whatever a server (or a box in the middle) sends, the
// reply decoder returns an error or at most the bound, and never panics.
func FuzzInflateReply(f *testing.F) {
	body := bytes.Repeat([]byte("pulled page "), 200)
	gz, _ := gzipBody(body)
	f.Add(true, zstdBytes(f, body))
	f.Add(false, gz)
	f.Add(true, zstdBytes(f, make([]byte, 1<<20)))
	f.Add(true, []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0})
	f.Fuzz(func(t *testing.T, useZstd bool, wire []byte) {
		enc := "gzip"
		if useZstd {
			enc = "zstd"
		}
		const max = 64 << 10
		out, err := inflateReply(enc, wire, max)
		if err == nil && len(out) > max {
			t.Fatalf("%d bytes past the bound", len(out))
		}
	})
}

func TestReadsZstd(t *testing.T) {
	for h, want := range map[string]bool{
		"": false, "gzip": false, "zstd, gzip": true, "gzip, ZSTD": true, "zstd;q=0": false,
		"zstd;q=0.5": true, "zstd;q=bogus": false, "xzstd": false, " zstd ; level=3": true,
	} {
		if got := readsZstd(h); got != want {
			t.Errorf("readsZstd(%q) = %v, want %v", h, got, want)
		}
	}
	body := bytes.Repeat([]byte("pushed op "), 5000)
	enc, zb, err := compressBody(body, true)
	var h zstd.Header
	if err != nil || enc != "zstd" || h.Decode(zb) != nil || !h.HasFCS || h.FrameContentSize != uint64(len(body)) {
		t.Fatalf("zstd request: %q %v, header %+v", enc, err, h)
	}
	if enc, gb, err := compressBody(body, false); err != nil || enc != "gzip" || gb[0] != 0x1f {
		t.Fatalf("gzip request: %q %v", enc, err)
	}
}
