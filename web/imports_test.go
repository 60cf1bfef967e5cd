package web

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundary holds the console to DESIGN.md §2: it goes through
// the engine and auth (as the Engine and Auth interfaces, in the
// vocabularies of sync/review and auth/identity), never the store, so its
// non-test build reaches neither package store nor a storage engine.
func TestImportBoundary(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned %d packages", len(deps))
	}
	const mod = "github.com/doorstep-health/doorstep/"
	exact := []string{mod + "sync", mod + "auth"} // their leaf subpackages are fine
	tree := []string{mod + "store", mod + "server", mod + "cmd", "github.com/dgraph-io/badger", "github.com/jackc/pgx"}
	for _, d := range deps {
		for _, f := range exact {
			if d == f {
				t.Errorf("web depends on %s", d)
			}
		}
		for _, f := range tree {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("web depends on %s", d)
			}
		}
	}
}
