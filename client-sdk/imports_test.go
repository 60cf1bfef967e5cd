package client

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundary keeps the SDK on its side of the wire: it must not
// depend on the server, the sync engine, the record store or echo.
func TestImportBoundary(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := []string{
		"github.com/doorstep-health/doorstep/server",
		"github.com/doorstep-health/doorstep/sync",
		"github.com/doorstep-health/doorstep/store",
		"github.com/doorstep-health/doorstep/auth",
		"github.com/doorstep-health/doorstep/cmd",
		"github.com/labstack/echo",
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned %d packages", len(deps))
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("client-sdk depends on %s", d)
			}
		}
	}
}
