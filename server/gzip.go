package server

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	gosync "sync"

	"github.com/doorstep-health/doorstep/api"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/labstack/echo/v4"
)

// requestID sets X-Request-Id on the response: the client's, if it sent a
// short one, else a random one.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if id == "" || len(id) > 64 || strings.IndexFunc(id, badIDRune) >= 0 {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

// badIDRune reports a character not allowed in a client's request ID
// (which ends up in logs): only letters, digits, '-', '_' and '.'.
func badIDRune(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
}

// gzipMinLength is the smallest response worth compressing.
const gzipMinLength = 1024

// Responses are compressed with github.com/klauspost/compress: its gzip
// is a drop-in for compress/gzip that deflates about twice as fast at the
// same level, and its zstd (RFC 8878, the "zstd" content coding of RFC
// 9659) inflates pulled pages several times faster than gzip and makes
// them about a third of gzip's size (docs/benchmarks.md "Issue 17, third
// pass: i17-wire"). zstd goes only to clients that name it.
var gzipWriters = gosync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// zstdMaxWindow is the largest window a zstd body may use: RFC 9659 (the
// zstd content coding) bounds it to 8 MiB, which every decoder accepts.
const zstdMaxWindow = 8 << 20

// zstdReplyWindow is the window of the server's reply encoder: 1 MiB, the
// size of a pull page (PageBytes), which finds the same matches as 8 MiB
// on pages (BenchmarkWireCodings: the same bytes) while an encoder keeps
// only twice its window of history (2 MiB, not 16 MiB) while pooled.
const zstdReplyWindow = 1 << 20

// zstdWriters hold streaming zstd encoders. One goroutine (concurrency
// 1) encodes in the Write calls themselves, so an encoder starts no
// goroutines of its own.
var zstdWriters = gosync.Pool{New: func() any {
	w, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(zstdReplyWindow), zstd.WithEncoderCRC(true))
	if err != nil {
		panic(fmt.Sprintf("server: zstd writer: %v", err)) // the options are constants
	}
	return w
}}

// gzipResponses compresses responses of at least gzipMinLength bytes for
// clients that accept it (Accept-Encoding): zstd to a client that names
// zstd at least as high as gzip, else gzip. Handlers write their whole
// body with one Blob/JSON call, so the decision is made on the first
// write.
func gzipResponses(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Add(echo.HeaderVary, echo.HeaderAcceptEncoding)
		coding := responseCoding(c.Request().Header.Get(echo.HeaderAcceptEncoding))
		if coding == "" {
			return next(c)
		}
		res := c.Response()
		gw := &gzipWriter{ResponseWriter: res.Writer, coding: coding}
		res.Writer = gw
		defer func() {
			res.Writer = gw.ResponseWriter
			gw.finish()
		}()
		return next(c)
	}
}

// Response content codings (RFC 9110 §8.4.1).
const (
	codingGzip = "gzip"
	codingZstd = "zstd"
)

// responseCoding picks a response's content coding from the request's
// Accept-Encoding: "zstd" when zstd is named with a quality above zero
// and at least gzip's, else "gzip" when acceptsGzip, else "" (none). The
// "*" wildcard stands for gzip only: zstd goes to clients that name it.
func responseCoding(h string) string {
	gz := acceptsGzip(h)
	zq, gq := -1.0, 0.0
	for _, part := range strings.Split(h, ",") {
		enc, params, _ := strings.Cut(part, ";")
		enc = strings.TrimSpace(enc)
		switch {
		case strings.EqualFold(enc, codingZstd):
			zq = quality(params)
		case strings.EqualFold(enc, codingGzip), enc == "*":
			if gz {
				gq = max(gq, quality(params))
			}
		}
	}
	switch {
	case zq > 0 && zq >= gq:
		return codingZstd
	case gz:
		return codingGzip
	}
	return ""
}

// acceptsGzip reports whether an Accept-Encoding header (RFC 9110 §12.5.3)
// allows a gzip response: gzip, or failing that the "*" wildcard, listed
// with a quality above zero. An explicit gzip entry wins over the
// wildcard; a malformed quality counts as a refusal.
func acceptsGzip(h string) bool {
	gzipQ, starQ := -1.0, -1.0
	for _, part := range strings.Split(h, ",") {
		enc, params, _ := strings.Cut(part, ";")
		enc = strings.TrimSpace(enc)
		var q *float64
		switch {
		case strings.EqualFold(enc, "gzip"):
			q = &gzipQ
		case enc == "*":
			q = &starQ
		default:
			continue
		}
		*q = quality(params)
	}
	if gzipQ >= 0 {
		return gzipQ > 0
	}
	return starQ > 0
}

// quality returns the q parameter of an Accept-Encoding entry's parameters
// (1 when absent), or 0 when it is not a number in [0, 1].
func quality(params string) float64 {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || q < 0 || q > 1 {
			return 0
		}
		return q
	}
	return 1
}

// gzipWriter compresses a response in its coding (gzip or zstd) once the
// first write shows it is worth it.
type gzipWriter struct {
	http.ResponseWriter
	coding  string
	status  int
	decided bool
	zw      io.WriteCloser // *gzip.Writer or *zstd.Encoder, from its pool
}

func (w *gzipWriter) WriteHeader(status int) {
	w.status = status // held until the first write decides the encoding
}

func (w *gzipWriter) Write(b []byte) (int, error) {
	if !w.decided {
		w.decided = true
		h := w.Header()
		if len(b) >= gzipMinLength && h.Get(echo.HeaderContentEncoding) == "" && w.status != http.StatusNoContent {
			h.Del(echo.HeaderContentLength)
			h.Set(echo.HeaderContentEncoding, w.coding)
			if w.coding == codingZstd {
				zw := zstdWriters.Get().(*zstd.Encoder)
				zw.Reset(w.ResponseWriter)
				w.zw = zw
			} else {
				zw := gzipWriters.Get().(*gzip.Writer)
				zw.Reset(w.ResponseWriter)
				w.zw = zw
			}
		}
		w.writeHeader()
	}
	if w.zw != nil {
		return w.zw.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

func (w *gzipWriter) writeHeader() {
	if w.status != 0 {
		w.ResponseWriter.WriteHeader(w.status)
	}
}

func (w *gzipWriter) finish() {
	if !w.decided {
		w.decided = true
		w.writeHeader()
	}
	if w.zw == nil {
		return
	}
	_ = w.zw.Close()
	switch zw := w.zw.(type) {
	case *zstd.Encoder:
		zw.Reset(nil) // drop the response writer before pooling
		zstdWriters.Put(zw)
	case *gzip.Writer:
		zw.Reset(nil)
		gzipWriters.Put(zw)
	}
	w.zw = nil
}

// flusher is what both pooled compressors offer besides io.WriteCloser.
type flusher interface{ Flush() error }

func (w *gzipWriter) Flush() {
	if f, ok := w.zw.(flusher); ok {
		_ = f.Flush()
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *gzipWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("hijack not supported")
}

func (w *gzipWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bodyLimit refuses, before reading, a request whose declared
// Content-Length exceeds max. readBody enforces the same cap on what is
// actually read (chunked bodies declare no length).
func bodyLimit(max int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if c.Request().ContentLength > max {
				return problemf(api.CodeBodyTooLarge, "body of %d bytes exceeds %d", c.Request().ContentLength, max)
			}
			return next(c)
		}
	}
}
