package server

import (
	"bufio"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	gosync "sync"

	"github.com/doorstep-health/doorstep/api"
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

var gzipWriters = gosync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// gzipResponses compresses responses of at least gzipMinLength bytes for
// clients that send Accept-Encoding: gzip. Handlers write their whole body
// with one Blob/JSON call, so the decision is made on the first write.
func gzipResponses(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Add(echo.HeaderVary, echo.HeaderAcceptEncoding)
		if !acceptsGzip(c.Request().Header.Get(echo.HeaderAcceptEncoding)) {
			return next(c)
		}
		res := c.Response()
		gw := &gzipWriter{ResponseWriter: res.Writer}
		res.Writer = gw
		defer func() {
			res.Writer = gw.ResponseWriter
			gw.finish()
		}()
		return next(c)
	}
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

type gzipWriter struct {
	http.ResponseWriter
	status  int
	decided bool
	zw      *gzip.Writer
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
			h.Set(echo.HeaderContentEncoding, "gzip")
			w.zw = gzipWriters.Get().(*gzip.Writer)
			w.zw.Reset(w.ResponseWriter)
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
	if w.zw != nil {
		_ = w.zw.Close()
		gzipWriters.Put(w.zw)
		w.zw = nil
	}
}

func (w *gzipWriter) Flush() {
	if w.zw != nil {
		_ = w.zw.Flush()
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
