package schema

import (
	"errors"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/vmihailenco/msgpack/v5"
)

// FuzzParse feeds outside bytes to Parse: it must never panic, and a schema
// it accepts must survive a JSON round trip unchanged in shape.
func FuzzParse(f *testing.F) {
	// Small seeds only: the fuzzer minimises every new interesting input, which
	// for the 30 KB default file takes minutes. TestDefaultParses covers it.
	f.Add([]byte(`{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"string"}]}]}`))
	f.Add([]byte(`{"version":2,"enums":{"e":["a","b"]},"collections":[{"name":"a","fields":[{"name":"x","type":"enum","enum":"e","crdt":"set"},{"name":"o","crdt":"log","type":"object","check":"instrument_response","properties":[{"name":"instrument","type":"string"},{"name":"answers","type":"int_map","min":0,"max":3}]}]}]}`))
	f.Add([]byte(`{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"int","min":5,"max":1}]}]}`))
	f.Add([]byte(`{"version":1,"collections":[{"name":"a","fields":[{"name":"o","type":"object","properties":[{"name":"p","type":"object","properties":[{"name":"q","type":"object","properties":[{"name":"r","type":"object","properties":[{"name":"s","type":"int"}]}]}]}]}]}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"version":1e400}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		b, err := s.JSON()
		if err != nil {
			t.Fatalf("JSON of a parsed schema: %v", err)
		}
		s2, err := Parse(b)
		if err != nil {
			t.Fatalf("reparse: %v\n%s", err, b)
		}
		if s2.Version() != s.Version() || len(s2.Collections()) != len(s.Collections()) {
			t.Fatal("round trip changed the schema")
		}
		if err := s.Compatible(s2); err != nil {
			t.Fatalf("round trip not compatible: %v", err)
		}
		for _, c := range s.Collections() {
			for _, fld := range c.Fields {
				if fld.CRDT < crdt.Register || fld.CRDT > crdt.Log {
					t.Fatalf("%s.%s: crdt %v", c.Name, fld.Name, fld.CRDT)
				}
			}
		}
	})
}

// FuzzValidateOp feeds outside value bytes for any field of the default
// schema and any op kind: ValidateOp must never panic, must return an error
// wrapping one of the package's sentinels, and must accept only values that
// decode (bounded) and that msgpack itself can decode.
func FuzzValidateOp(f *testing.F) {
	seed := func(v any) []byte { b, _ := msgpack.Marshal(v); return b }
	f.Add(uint16(0), uint16(0), uint8(1), seed("9434765919"))
	f.Add(uint16(0), uint16(5), uint8(1), seed("1938-04-02"))
	f.Add(uint16(0), uint16(29), uint8(1), seed(6))
	f.Add(uint16(0), uint16(24), uint8(2), seed("dog"))
	f.Add(uint16(4), uint16(11), uint8(4), seed(map[string]any{"instrument": "ons4", "answers": map[string]int{"ons4_happy": 7}}))
	f.Add(uint16(7), uint16(10), uint8(4), seed(map[string]any{"text": "x", "owner": "person"}))
	f.Add(uint16(0), uint16(0), uint8(1), []byte{0xdb, 0xff, 0xff, 0xff, 0xff})
	f.Add(uint16(0), uint16(0), uint8(1), []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a'})
	f.Add(uint16(0), uint16(0), uint8(3), []byte{})
	f.Add(uint16(0), uint16(0), uint8(1), []byte{0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x01})
	s := Default()
	cols := s.Collections()
	f.Fuzz(func(t *testing.T, ci, fi uint16, kind uint8, value []byte) {
		c := cols[int(ci)%len(cols)]
		field := crdt.DeletedField
		if int(fi) < len(c.Fields)*4 { // mostly real fields, sometimes the delete register
			field = c.Fields[int(fi)%len(c.Fields)].Name
		}
		op := &crdt.Op{Collection: c.Name, Field: field, Kind: crdt.Kind(kind%5 + 1), Value: value}
		err := s.ValidateOp(op)
		if err != nil {
			if !errors.Is(err, ErrInvalidValue) && !errors.Is(err, ErrWrongType) {
				t.Fatalf("error wraps no expected sentinel: %v", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Collection != c.Name || ve.Reason == "" {
				t.Fatalf("error lacks where and why: %#v", err)
			}
			return
		}
		if op.Kind == crdt.KindRemove && len(value) == 0 {
			return
		}
		v, derr := DecodeValue(value)
		if derr != nil {
			t.Fatalf("accepted a value that does not decode: %v", derr)
		}
		var lib any
		if err := msgpack.Unmarshal(value, &lib); err != nil {
			t.Fatalf("accepted %x (%#v), which msgpack cannot decode: %v", value, v, err)
		}
	})
}
