package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestGate: a fixable module finding fails the gate; standard-library
// findings and findings without a fixed release are reported only.
func TestGate(t *testing.T) {
	in := `{"config":{"protocol_version":"v1.0.0"}}
{"finding":{"osv":"GO-2026-6865","fixed_version":"v1.20.2","trace":[{"module":"github.com/klauspost/compress","version":"v1.20.1"}]}}
{"finding":{"osv":"GO-2026-6865","fixed_version":"v1.20.2","trace":[{"module":"github.com/klauspost/compress","version":"v1.20.1","package":"github.com/klauspost/compress/zstd","function":"Decode"}]}}
{"finding":{"osv":"GO-2026-6603","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8","package":"net/http","function":"Serve"}]}}
{"finding":{"osv":"GO-2026-6875","trace":[{"module":"github.com/labstack/echo/v4","version":"v4.16.5","package":"github.com/labstack/echo/v4"}]}}
`
	var out bytes.Buffer
	bad, err := gate(strings.NewReader(in), &out)
	if err != nil {
		t.Fatal(err)
	}
	if bad != 1 {
		t.Fatalf("%d fixable, want 1:\n%s", bad, out.String())
	}
	for _, want := range []string{
		"GO-2026-6865  github.com/klauspost/compress@v1.20.1 (called)  FIXABLE: upgrade to v1.20.2",
		"GO-2026-6603  stdlib@v1.26.8 (called)  fixed in Go v1.26.9: needs a newer toolchain; reported only",
		"GO-2026-6875  github.com/labstack/echo/v4@v4.16.5 (imported)  no fixed release: reported only",
	} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if bad, err := gate(strings.NewReader(`{"config":{}}
{"finding":{"osv":"X","trace":[{"module":"stdlib","version":"v1"}]}}`), &out); bad != 0 || err != nil {
		t.Errorf("a stdlib finding failed the gate: %d %v", bad, err)
	}
	// No govulncheck output at all (it failed before starting) is an error,
	// not a pass.
	if _, err := gate(strings.NewReader(""), &out); err == nil {
		t.Error("empty input passed")
	}
}
