package client

// Content codings of sync bodies (docs/PROTOCOL.md §22): requests are
// zstd-compressed once a reply's Accept-Encoding said the server reads
// zstd, else gzipped; replies come in zstd or gzip, whichever the server
// picks from acceptEncoding. Both use github.com/klauspost/compress: its gzip is a
// drop-in for compress/gzip that deflates a packed push faster than
// compress/gzip at the same level for the same bytes, and zstd
// inflates a pulled page several times faster than gzip and is about a
// third of its size (docs/benchmarks.md "Issue 17, third pass: i17-wire").

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	gosync "sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// acceptEncoding is the Accept-Encoding of a sync request: zstd first, and
// gzip for servers that predate zstd replies. Setting it turns off the
// HTTP transport's transparent decompression, so the reply's wire size can
// be counted.
const acceptEncoding = "zstd, gzip"

// zstdMaxWindow is the largest window a zstd reply may use: RFC 9659
// (the zstd content coding) bounds it to 8 MiB.
const zstdMaxWindow = 8 << 20

// gzipWriters compress requests at gzip's default level, as
// compress/gzip did: klauspost's level 6 costs about two thirds of the CPU
// of compress/gzip's for the same bytes, while its level 1 (BestSpeed)
// costs a third but sends a fifth more bytes of a packed push.
var gzipWriters = gosync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression)
	return w
}}

// zstdReaders hold streaming zstd decoders that decode in the caller's
// Read calls (concurrency 1: no goroutines of their own), within
// zstdMaxWindow of history.
var zstdReaders = gosync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow),
		zstd.WithDecoderMaxMemory(zstdMaxWindow), zstd.WithDecodeBuffersBelow(0))
	if err != nil {
		panic(fmt.Sprintf("client: zstd reader: %v", err)) // the options are constants
	}
	return d
}}

// zstdEncoder compresses whole request bodies (EncodeAll, which states
// the content size in the frame, as a server requires), at zstd's default
// level: on a packed push it costs less CPU than gzip's default level and
// makes a seventh fewer bytes (server.BenchmarkWireCodings). EncodeAll
// starts no goroutines; two may run at once (a pipelined sync).
// zstdRequestWindow is the request encoder's window: 1 MiB finds the same
// matches in a packed push as 8 MiB (server.BenchmarkWireCodings), and an
// encoder keeps twice its window of history (2 MiB, not 16 MiB, on the
// device).
const zstdRequestWindow = 1 << 20

var zstdEncoder = gosync.OnceValue(func() *zstd.Encoder {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(2),
		zstd.WithWindowSize(zstdRequestWindow), zstd.WithEncoderCRC(true))
	if err != nil {
		panic(fmt.Sprintf("client: zstd encoder: %v", err)) // the options are constants
	}
	return e
})

// compressBody compresses a request body: in zstd when the server said it
// reads zstd, else in gzip. It returns the Content-Encoding to send.
func compressBody(body []byte, zstdOK bool) (string, []byte, error) {
	if zstdOK {
		return "zstd", zstdEncoder().EncodeAll(body, make([]byte, 0, len(body)/8+64)), nil
	}
	b, err := gzipBody(body)
	return "gzip", b, err
}

// readsZstd reports whether a reply's Accept-Encoding (the request codings
// the server reads, RFC 9110 §12.5.3) names zstd with a quality above 0.
func readsZstd(h string) bool {
	for _, part := range strings.Split(h, ",") {
		name, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(name), "zstd") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(params), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			return true
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return err == nil && q > 0 && q <= 1
	}
	return false
}

// gzipBody compresses a request body as one gzip member (with the size
// trailer the server charges its budget from).
func gzipBody(body []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(body)/8 + 64)
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&buf)
	if _, err := zw.Write(body); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// inflateReply decodes a reply body b sent in the content coding enc
// (Content-Encoding), refusing more than max decoded bytes (a bomb gets
// errReplyTooLarge after at most max+1 bytes of output). An empty coding
// or identity returns b as it is.
func inflateReply(enc string, b []byte, max int64) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "", "identity":
		return b, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		return readBounded(zr, max)
	case "zstd":
		zr := zstdReaders.Get().(*zstd.Decoder)
		defer func() {
			_ = zr.Reset(nil) // drop b before pooling
			zstdReaders.Put(zr)
		}()
		if err := zr.Reset(bytes.NewReader(b)); err != nil {
			return nil, err
		}
		return readBounded(zr, max)
	}
	return nil, fmt.Errorf("unknown Content-Encoding %q", enc)
}
