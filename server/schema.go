package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// schemaDoc is the active schema as GET /v1/schema serves it: the schema
// file (extensions merged in) and its strong ETag, computed once, since a
// server's schema does not change while it runs.
type schemaDoc struct {
	body []byte
	etag string
}

func newSchemaDoc(s *Server) (*schemaDoc, error) {
	b, err := s.cfg.Schema.JSON()
	if err != nil {
		return nil, fmt.Errorf("server: schema: %w", err)
	}
	sum := sha256.Sum256(b)
	return &schemaDoc{body: b, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}, nil
}

// getSchema serves GET /v1/schema: the active schema file, so a client in
// any language learns each collection's fields, their CRDT types, clinical
// flags and validation rules. If-None-Match with the current ETag gets 304.
func (s *Server) getSchema(c echo.Context) error {
	h := c.Response().Header()
	h.Set("ETag", s.schema.etag)
	h.Set("Cache-Control", "private, no-cache")
	if etagMatch(c.Request().Header.Get("If-None-Match"), s.schema.etag) {
		return c.NoContent(http.StatusNotModified)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, s.schema.body)
}

// etagMatch reports whether an If-None-Match header names etag (or is *),
// comparing weakly as RFC 9110 §13.1.2 asks.
func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}
