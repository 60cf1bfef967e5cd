package api

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestCodeStatus(t *testing.T) {
	tests := []struct {
		code Code
		want int
	}{
		{CodeMalformedBody, http.StatusBadRequest},
		{CodeBodyTooLarge, http.StatusRequestEntityTooLarge},
		{CodeUnsupportedMedia, http.StatusUnsupportedMediaType},
		{CodeTokenExpired, http.StatusUnauthorized},
		{CodeDeviceRevoked, http.StatusUnauthorized},
		{CodeDeviceMismatch, http.StatusForbidden},
		{CodeForbidden, http.StatusForbidden},
		{CodeNotFound, http.StatusNotFound},
		{CodeRateLimited, http.StatusTooManyRequests},
		{CodeUnavailable, http.StatusServiceUnavailable},
		{CodeMethodNotAllowed, http.StatusMethodNotAllowed},
		// Op-level codes never travel as a request status.
		{CodeSeqGap, http.StatusInternalServerError},
		{Code("no_such_code"), http.StatusInternalServerError},
	}
	for _, tt := range tests {
		if got := tt.code.Status(); got != tt.want {
			t.Errorf("%s.Status() = %d, want %d", tt.code, got, tt.want)
		}
	}
}

// Every request-level code in the table is a distinct snake_case string
// with a 4xx or 5xx status, and docs/PROTOCOL.md lists every code this
// package declares, so the table and the published contract cannot drift.
func TestCodesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("errors.go")
	if err != nil {
		t.Fatal(err)
	}
	declared := regexp.MustCompile(`Code\w+\s+Code = "([a-z_]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(declared) < 20 {
		t.Fatalf("found only %d code declarations in errors.go", len(declared))
	}
	seen := map[string]bool{}
	for _, m := range declared {
		c := m[1]
		if seen[c] {
			t.Errorf("code %q declared twice", c)
		}
		seen[c] = true
		if !strings.Contains(string(doc), "`"+c+"`") {
			t.Errorf("code %q is not in docs/PROTOCOL.md", c)
		}
	}
	for c, s := range statusByCode {
		if s < 400 || s > 599 {
			t.Errorf("code %s has status %d", c, s)
		}
	}
}

func TestProblemEncodings(t *testing.T) {
	p := NewProblem(CodeSeqGap, "x")
	if p.Status != http.StatusInternalServerError {
		t.Fatalf("status %d", p.Status)
	}
	p = NewProblem(CodeDeviceRevoked, "device revoked by an admin")
	j, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"type": "urn:doorstep:error:device_revoked", "title": "Unauthorized", "status": 401.0, "code": "device_revoked", "detail": "device revoked by an admin"} {
		if back[k] != want {
			t.Errorf("json %s = %v, want %v", k, back[k], want)
		}
	}
	m, err := msgpack.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var mp Problem
	if err := msgpack.Unmarshal(m, &mp); err != nil {
		t.Fatal(err)
	}
	if mp != *p {
		t.Errorf("msgpack round trip %+v, want %+v", mp, *p)
	}
	if !strings.Contains(p.Error(), "device_revoked") {
		t.Errorf("Error() = %q", p.Error())
	}
}
