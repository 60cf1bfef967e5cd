// Command vulngate reads govulncheck's JSON output (-format json) on
// standard input, prints each finding, and exits 1 when a required module
// (not the standard library) has a known vulnerability with a fixed
// version available: a dependency bump away. Standard-library findings
// (fixed by a newer Go toolchain) and findings with no fixed release are
// reported without failing. make lint runs it after govulncheck.
//
// It is a build helper: nothing in the server, the SDK or the tests
// imports it.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

type finding struct {
	OSV          string `json:"osv"`
	FixedVersion string `json:"fixed_version"`
	Trace        []struct {
		Module   string `json:"module"`
		Version  string `json:"version"`
		Package  string `json:"package"`
		Function string `json:"function"`
	} `json:"trace"`
}

type key struct{ osv, module, version, fixed string }

func main() {
	bad, err := gate(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulngate:", err)
		os.Exit(2)
	}
	if bad > 0 {
		fmt.Printf("vulngate: %d fixable vulnerabilit(ies) in required modules: upgrade them (go get MODULE@FIXED && go mod tidy)\n", bad)
		os.Exit(1)
	}
}

// gate reads the JSON stream from r, writes one line per distinct
// vulnerable module version to w, and returns how many are fixable by a
// module upgrade.
func gate(r io.Reader, w io.Writer) (int, error) {
	dec := json.NewDecoder(r)
	seen := map[key]string{} // → how deep it reaches: module, package or symbol
	configured := false
	for {
		var msg struct {
			Config  json.RawMessage `json:"config"`
			Finding *finding        `json:"finding"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return 0, fmt.Errorf("govulncheck output: %w", err)
		}
		configured = configured || msg.Config != nil
		f := msg.Finding
		if f == nil || len(f.Trace) == 0 {
			continue
		}
		t := f.Trace[0]
		k := key{f.OSV, t.Module, t.Version, f.FixedVersion}
		level := "required"
		switch {
		case t.Function != "":
			level = "called"
		case t.Package != "":
			level = "imported"
		}
		if rank(level) > rank(seen[k]) {
			seen[k] = level
		}
	}
	if !configured {
		return 0, errors.New("no govulncheck run in the input (did govulncheck fail?)")
	}
	keys := make([]key, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].module != keys[j].module {
			return keys[i].module < keys[j].module
		}
		return keys[i].osv < keys[j].osv
	})
	bad := 0
	for _, k := range keys {
		verdict := "no fixed release: reported only"
		switch {
		case k.module == "stdlib":
			verdict = "fixed in Go " + k.fixed + ": needs a newer toolchain; reported only"
		case k.fixed != "":
			verdict = "FIXABLE: upgrade to " + k.fixed
			bad++
		}
		fmt.Fprintf(w, "%s  %s@%s (%s)  %s\n", k.osv, k.module, k.version, seen[k], verdict)
	}
	return bad, nil
}

func rank(level string) int {
	switch level {
	case "required":
		return 1
	case "imported":
		return 2
	case "called":
		return 3
	}
	return 0
}
