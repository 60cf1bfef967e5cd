package client

// Content codings of sync bodies (docs/PROTOCOL.md §22): requests are
// gzipped, replies come in zstd or gzip, whichever the server picks from
// acceptEncoding. Both use github.com/klauspost/compress: its gzip is a
// drop-in for compress/gzip that deflates a packed push faster than
// compress/gzip at the same level for the same bytes, and zstd
// inflates a pulled page several times faster than gzip and is about a
// third of its size (docs/benchmarks.md "Issue 17, third pass: i17-wire").

import (
	"bytes"
	"fmt"
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
