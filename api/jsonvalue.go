package api

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/crdt"
)

// ValueFromJSON is the canonical msgpack encoding of one JSON value, as
// the JSON routes (resolve), the console and the test vectors turn a JSON
// value into an op value: integers as integers in their smallest form,
// other numbers as float64, objects with their keys sorted.
func ValueFromJSON(raw []byte) (msgpack.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("json value: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("json value: more than one value")
	}
	return crdt.EncodeValue(fromJSON(v))
}

// fromJSON replaces json.Numbers, at any depth, by int64 or float64.
func fromJSON(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case map[string]any:
		for k, x := range t {
			t[k] = fromJSON(x)
		}
	case []any:
		for i, x := range t {
			t[i] = fromJSON(x)
		}
	}
	return v
}
