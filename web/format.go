package web

import (
	"fmt"
	"html/template"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

var funcs = template.FuncMap{
	"when":     when,
	"ago":      ago,
	"path":     url.PathEscape,
	"query":    url.QueryEscape,
	"roleName": roleName,
	"short":    func(s string) string { return shortID(s) },
	"pct": func(a, b int) int {
		if b == 0 {
			return 0
		}
		return a * 100 / b
	},
	"add": func(a, b int) int { return a + b },
	"measure": func(id string) string {
		if l := ons4Labels[id]; l != "" {
			return l
		}
		return id
	},
}

// when formats a time for a page: date and minute in UTC, or "—".
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2 Jan 2006 15:04 UTC")
}

// ago says roughly how long after ref t was, for "reached the server 3
// days later".
func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "under a minute"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour")
	}
	return plural(int(d/(24*time.Hour)), "day")
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

func roleName(role string) string {
	switch role {
	case "link_worker":
		return "link worker"
	}
	return role
}

func shortID(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

// decode turns a stored msgpack value into a Go value (nil if it does not
// decode).
func decode(raw []byte) (v any) {
	defer func() {
		if recover() != nil {
			v = nil
		}
	}()
	if len(raw) == 0 {
		return nil
	}
	if err := msgpack.Unmarshal(raw, &v); err != nil {
		return nil
	}
	return v
}

// show formats a stored value for a person to read: strings as they are,
// booleans as yes or no, lists joined, objects as "key: value" pairs.
func show(raw []byte) string {
	if len(raw) == 0 {
		return "—"
	}
	return showValue(decode(raw))
}

func showValue(v any) string {
	switch t := v.(type) {
	case nil:
		return "—"
	case string:
		return t
	case bool:
		if t {
			return "yes"
		}
		return "no"
	case []any:
		parts := make([]string, len(t))
		for i, x := range t {
			parts[i] = showValue(x)
		}
		return strings.Join(parts, ", ")
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ": " + showValue(t[k])
		}
		return strings.Join(parts, "; ")
	}
	return fmt.Sprint(v)
}

// typedValue turns what a coordinator typed into a msgpack value: valid
// JSON (a number, true/false, a quoted string, an object) as that JSON,
// anything else as the text itself. Integers stay integers.
func typedValue(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := api.ValueFromJSON([]byte(s)); err == nil {
		return b, nil
	}
	return crdt.EncodeValue(s)
}
