package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/doorstep-health/doorstep/api"
	"github.com/klauspost/compress/gzip"
	"github.com/labstack/echo/v4"
)

// readBody reads the request body, refusing more than maxWire bytes as sent
// and, for Content-Encoding gzip, more than maxDecoded bytes once
// decompressed (a gzip bomb gets CodeBodyTooLarge after reading at most
// maxDecoded+1 bytes of output).
func readBody(c echo.Context, maxWire, maxDecoded int64) ([]byte, error) {
	r := c.Request()
	if r.ContentLength > maxWire {
		return nil, problemf(api.CodeBodyTooLarge, "body of %d bytes exceeds %d", r.ContentLength, maxWire)
	}
	var wire io.Reader = http.MaxBytesReader(c.Response(), r.Body, maxWire)
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get(echo.HeaderContentEncoding)))
	switch enc {
	case "", "identity":
		return readCapped(wire, maxWire, r.ContentLength)
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(wire)
		if err != nil {
			return nil, wireErr(err, "gzip body")
		}
		b, err := readCapped(zr, maxDecoded, -1)
		if err != nil {
			return nil, err
		}
		return b, nil
	default:
		return nil, problemf(api.CodeUnsupportedMedia, "Content-Encoding %q is not supported; use gzip or none", enc)
	}
}

// readCapped reads all of r, refusing more than max bytes. A known length
// sizes the buffer at once instead of doubling it.
func readCapped(r io.Reader, max, length int64) ([]byte, error) {
	var buf bytes.Buffer
	if length > 0 && length <= max {
		buf.Grow(int(length) + bytes.MinRead)
	}
	n, err := buf.ReadFrom(io.LimitReader(r, max+1))
	if err != nil {
		return nil, wireErr(err, "body")
	}
	if n > max {
		return nil, problemf(api.CodeBodyTooLarge, "body exceeds %d bytes", max)
	}
	return buf.Bytes(), nil
}

func wireErr(err error, what string) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return problemf(api.CodeBodyTooLarge, "%s exceeds %d bytes", what, mbe.Limit)
	}
	return &Error{Code: api.CodeMalformedBody, Detail: what + ": " + err.Error(), Err: err}
}

// requireType refuses a request whose Content-Type is not want.
func requireType(c echo.Context, want string) error {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != want {
		return problemf(api.CodeUnsupportedMedia, "Content-Type must be %s, not %q", want, ct)
	}
	return nil
}

// bindJSON reads a bounded JSON body into v, refusing unknown fields and
// trailing data.
func (s *Server) bindJSON(c echo.Context, v any) error {
	if err := requireType(c, echo.MIMEApplicationJSON); err != nil {
		return err
	}
	b, err := readBody(c, s.cfg.MaxJSONBody, s.cfg.MaxJSONBody)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &Error{Code: api.CodeMalformedBody, Detail: "JSON body: " + err.Error(), Err: err}
	}
	// dec.More misses a stray ']' or '}'; only EOF may follow the value.
	if _, err := dec.Token(); err != io.EOF {
		return problemf(api.CodeMalformedBody, "JSON body: trailing data")
	}
	return nil
}
