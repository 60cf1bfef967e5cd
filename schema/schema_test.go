package schema

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/vmihailenco/msgpack/v5"
)

var testReplica = crdt.ReplicaID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

func opID(n uint16) crdt.OpID {
	return crdt.OpID{Time: crdt.MakeTimestamp(1_700_000_000_000, n), Replica: testReplica}
}

func mv(t testing.TB, v any) msgpack.RawMessage {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeOp(t testing.TB, collection, field string, v any) *crdt.Op {
	return &crdt.Op{ID: opID(2), Team: "t", Collection: collection, Record: "r1", Field: field, Kind: crdt.KindWrite, Value: mv(t, v)}
}

func TestDefaultParses(t *testing.T) {
	s := Default()
	if s.Version() < 1 {
		t.Fatalf("version %d", s.Version())
	}
	want := []string{"people", "carers", "referrals", "contacts", "assessments", "needs", "care_plans", "goals",
		"onward_referrals", "dropin_sessions", "dropin_attendances", "organisations", "consent_events"}
	var got []string
	for _, c := range s.Collections() {
		got = append(got, c.Name)
		if len(c.Fields) == 0 {
			t.Errorf("%s has no fields", c.Name)
		}
		for _, f := range c.Fields {
			if f.CRDT < crdt.Register || f.CRDT > crdt.Log {
				t.Errorf("%s.%s: crdt type %v", c.Name, f.Name, f.CRDT)
			}
			if !slices.Contains(valueTypes, f.Type) {
				t.Errorf("%s.%s: value type %q", c.Name, f.Name, f.Type)
			}
			if f.Type == TypeEnum && len(f.Enum) == 0 {
				t.Errorf("%s.%s: enum without values", c.Name, f.Name)
			}
			if f.RequiredOnCreate && f.CRDT != crdt.Register {
				t.Errorf("%s.%s: required_on_create on a %s", c.Name, f.Name, f.CRDT)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("collections %v, want %v", got, want)
	}
	needs, _ := s.Field("needs", "category")
	if len(needs.Enum) != 21 || needs.Enum[0] != "aids_adaptations_home_safety" || needs.Enum[20] != "other" {
		t.Errorf("need categories %v", needs.Enum)
	}
	// Round trip through JSON.
	b, err := s.JSON()
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Parse(b)
	if err != nil {
		t.Fatalf("reparse: %v", err)
	}
	if len(s2.Collections()) != len(s.Collections()) || s2.Version() != s.Version() {
		t.Fatal("round trip changed the schema")
	}
	if err := s.Compatible(s2); err != nil {
		t.Fatal(err)
	}
}

func TestClinicalAndMissingOnCreate(t *testing.T) {
	s := Default()
	for _, c := range []struct {
		coll, field string
		want        bool
	}{
		{"people", "nhs_number", true},
		{"people", "date_of_birth", true},
		{"people", "cfs", true},
		{"people", "preferred_name", false},
		{"consent_events", "decision", true},
		{"people", "no_such_field", false},
		{"no_such", "nhs_number", false},
	} {
		if got := s.Clinical(c.coll, c.field); got != c.want {
			t.Errorf("Clinical(%s, %s) = %v", c.coll, c.field, got)
		}
	}
	got := s.MissingOnCreate("people", []string{"given_name", "address", "phone"})
	if !slices.Equal(got, []string{"family_name", "date_of_birth"}) {
		t.Errorf("MissingOnCreate = %v", got)
	}
	if got := s.MissingOnCreate("people", []string{"given_name", "family_name", "date_of_birth", "address"}); got != nil {
		t.Errorf("MissingOnCreate complete = %v", got)
	}
	if got := s.MissingOnCreate("nope", nil); got != nil {
		t.Errorf("unknown collection: %v", got)
	}
}

func TestValidateValueTypes(t *testing.T) {
	s := Default()
	long := strings.Repeat("x", 101)
	cases := []struct {
		coll, field string
		v           any
		want        error // nil, ErrInvalidValue or ErrWrongType
	}{
		// string
		{"people", "given_name", "Margaret", nil},
		{"people", "given_name", "", nil},
		{"people", "given_name", long, ErrInvalidValue},
		{"people", "given_name", string([]byte{0xff, 0xfe}), ErrInvalidValue},
		{"people", "given_name", 7, ErrWrongType},
		{"people", "given_name", []byte("bin"), ErrWrongType},
		// text
		{"people", "household_notes", strings.Repeat("a", 2000), nil},
		{"people", "household_notes", strings.Repeat("a", 2001), ErrInvalidValue},
		// nil clears a register
		{"people", "preferred_name", nil, nil},
		// int with range
		{"people", "cfs", 1, nil},
		{"people", "cfs", 9, nil},
		{"people", "cfs", int8(5), nil},
		{"people", "cfs", uint64(6), nil},
		{"people", "cfs", 0, ErrInvalidValue},
		{"people", "cfs", 10, ErrInvalidValue},
		{"people", "cfs", -3, ErrInvalidValue},
		{"people", "cfs", uint64(1 << 63), ErrInvalidValue},
		{"people", "cfs", 5.0, ErrWrongType},
		{"people", "cfs", "5", ErrWrongType},
		{"goals", "person_importance", 0, nil},
		{"goals", "person_importance", 11, ErrInvalidValue},
		// bool
		{"people", "lives_alone", true, nil},
		{"people", "lives_alone", false, nil},
		{"people", "lives_alone", "yes", ErrWrongType},
		{"people", "lives_alone", 1, ErrWrongType},
		// date
		{"people", "date_of_birth", "1938-04-02", nil},
		{"people", "date_of_birth", "2024-02-29", nil},
		{"people", "date_of_birth", "2023-02-29", ErrInvalidValue},
		{"people", "date_of_birth", "1938-4-2", ErrInvalidValue},
		{"people", "date_of_birth", "02/04/1938", ErrInvalidValue},
		{"people", "date_of_birth", "1938-04-02T00:00:00Z", ErrInvalidValue},
		{"people", "date_of_birth", "", ErrInvalidValue},
		{"people", "date_of_birth", 19380402, ErrWrongType},
		// datetime
		{"contacts", "actual_start", "2026-11-21T09:30:00Z", nil},
		{"contacts", "actual_start", "2026-11-21T09:30:00.123+01:00", nil},
		{"contacts", "actual_start", "2026-11-21 09:30", ErrInvalidValue},
		{"contacts", "actual_start", "2026-11-21", ErrInvalidValue},
		{"contacts", "actual_start", "2026-13-21T09:30:00Z", ErrInvalidValue},
		{"contacts", "actual_start", int64(1700000000), ErrWrongType},
		// enum (inline and named)
		{"people", "gender", "female", nil},
		{"people", "gender", "Female", ErrInvalidValue},
		{"people", "gender", "", ErrInvalidValue},
		{"people", "gender", 1, ErrWrongType},
		{"needs", "category", "mobility_falls", nil},
		{"needs", "category", "falls", ErrInvalidValue},
		// nhs_number
		{"people", "nhs_number", "9434765919", nil},
		{"people", "nhs_number", "9990000018", nil},
		{"people", "nhs_number", "943 476 5919", ErrInvalidValue},
		{"people", "nhs_number", "9434765918", ErrInvalidValue},
		{"people", "nhs_number", "1234567890", ErrInvalidValue},
		{"people", "nhs_number", "943476591", ErrInvalidValue},
		{"people", "nhs_number", 9434765919, ErrWrongType},
		// object (log entries)
		{"goals", "actions", map[string]any{"text": "Ring Age UK about a befriender", "owner": "person", "due": "2026-12-01"}, nil},
		{"goals", "actions", map[string]any{"owner": "person"}, ErrInvalidValue},
		{"goals", "actions", map[string]any{"text": "x", "owner": "dog"}, ErrInvalidValue},
		{"goals", "actions", map[string]any{"text": "x", "colour": "red"}, ErrInvalidValue},
		{"goals", "actions", map[string]any{"text": 3}, ErrWrongType},
		{"goals", "actions", "just text", ErrWrongType},
		// int_map inside an instrument response
		{"assessments", "responses", map[string]any{"instrument": "ucla3", "answers": map[string]int{"ucla_companionship": 2, "ucla_left_out": 1, "ucla_isolated": 3}}, nil},
		{"assessments", "responses", map[string]any{"instrument": "ucla3", "answers": map[string]int{"ucla_companionship": 2, "ucla_left_out": 1}}, ErrInvalidValue},
		{"assessments", "responses", map[string]any{"instrument": "ucla3", "answers": map[string]int{"ucla_companionship": 4, "ucla_left_out": 1, "ucla_isolated": 3}}, ErrInvalidValue},
		{"assessments", "responses", map[string]any{"instrument": "ons4", "answers": map[string]int{"ons4_happy": 7}, "administered_by": "self_completed"}, nil},
		{"assessments", "responses", map[string]any{"instrument": "ons4", "answers": map[string]int{"ons4_happy": 11}}, ErrInvalidValue},
		{"assessments", "responses", map[string]any{"instrument": "ons4", "answers": map[string]string{"ons4_happy": "7"}}, ErrWrongType},
		{"assessments", "responses", map[string]any{"instrument": "sf36", "answers": map[string]int{"q1": 1}}, ErrInvalidValue},
		{"assessments", "responses", map[string]any{"instrument": "cfs", "answers": map[string]int{"cfs": 6}}, nil},
		{"assessments", "responses", map[string]any{"answers": map[string]int{"cfs": 6}}, ErrInvalidValue},
	}
	for _, c := range cases {
		op := writeOp(t, c.coll, c.field, c.v)
		f, _ := s.Field(c.coll, c.field)
		switch f.CRDT {
		case crdt.Set:
			op.Kind = crdt.KindAdd
		case crdt.Log:
			op.Kind = crdt.KindAppend
		}
		err := s.ValidateOp(op)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s.%s = %#v: got %v, want %v", c.coll, c.field, c.v, err, c.want)
			continue
		}
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Collection != c.coll || !strings.HasPrefix(ve.Field, c.field) || ve.Reason == "" {
				t.Errorf("%s.%s: error %#v lacks collection, field or reason", c.coll, c.field, err)
			}
		}
	}
}

func TestValidateOpKindsAndNames(t *testing.T) {
	s := Default()
	base := func() *crdt.Op { return writeOp(t, "people", "given_name", "Ann") }
	cases := []struct {
		name string
		edit func(*crdt.Op)
		want error
	}{
		{"valid write", func(*crdt.Op) {}, nil},
		{"unknown collection", func(o *crdt.Op) { o.Collection = "patients" }, ErrUnknownCollection},
		{"unknown field", func(o *crdt.Op) { o.Field = "favourite_colour" }, ErrUnknownField},
		{"add on register", func(o *crdt.Op) { o.Kind = crdt.KindAdd }, ErrWrongType},
		{"append on register", func(o *crdt.Op) { o.Kind = crdt.KindAppend }, ErrWrongType},
		{"write on set", func(o *crdt.Op) { o.Field, o.Value = "risk_flags", mv(t, "dog") }, ErrWrongType},
		{"add on set", func(o *crdt.Op) { o.Field, o.Kind, o.Value = "risk_flags", crdt.KindAdd, mv(t, "dog") }, nil},
		{"add bad element", func(o *crdt.Op) { o.Field, o.Kind, o.Value = "risk_flags", crdt.KindAdd, mv(t, "cat") }, ErrInvalidValue},
		{"add nil element", func(o *crdt.Op) { o.Field, o.Kind, o.Value = "risk_flags", crdt.KindAdd, mv(t, nil) }, ErrInvalidValue},
		{"remove stale element", func(o *crdt.Op) {
			o.Field, o.Kind, o.Value, o.Pred = "risk_flags", crdt.KindRemove, mv(t, "cat"), []crdt.OpID{opID(1)}
		}, nil},
		{"remove without value", func(o *crdt.Op) { o.Field, o.Kind, o.Value = "risk_flags", crdt.KindRemove, nil }, nil},
		{"remove garbage", func(o *crdt.Op) { o.Field, o.Kind, o.Value = "risk_flags", crdt.KindRemove, []byte{0xc1} }, ErrInvalidValue},
		{"remove on log", func(o *crdt.Op) { o.Field, o.Kind = "case_notes", crdt.KindRemove }, ErrWrongType},
		{"append on log", func(o *crdt.Op) {
			o.Field, o.Kind, o.Value = "case_notes", crdt.KindAppend, mv(t, "Visited; kettle tipper fitted.")
		}, nil},
		{"append nil", func(o *crdt.Op) { o.Field, o.Kind, o.Value = "case_notes", crdt.KindAppend, mv(t, nil) }, ErrInvalidValue},
		{"delete", func(o *crdt.Op) { o.Field, o.Value = crdt.DeletedField, mv(t, true) }, nil},
		{"restore", func(o *crdt.Op) { o.Field, o.Value = crdt.DeletedField, mv(t, false) }, nil},
		{"delete on organisations", func(o *crdt.Op) { o.Collection, o.Field, o.Value = "organisations", crdt.DeletedField, mv(t, true) }, nil},
		{"delete non-bool", func(o *crdt.Op) { o.Field, o.Value = crdt.DeletedField, mv(t, "yes") }, ErrWrongType},
		{"delete as add", func(o *crdt.Op) { o.Field, o.Kind, o.Value = crdt.DeletedField, crdt.KindAdd, mv(t, true) }, ErrWrongType},
		{"delete unknown collection", func(o *crdt.Op) { o.Collection, o.Field, o.Value = "x", crdt.DeletedField, mv(t, true) }, ErrUnknownCollection},
		{"truncated value", func(o *crdt.Op) { o.Value = []byte{0xa5, 'A', 'n'} }, ErrInvalidValue},
		{"trailing bytes", func(o *crdt.Op) { o.Value = append(mv(t, "Ann"), 0x01) }, ErrInvalidValue},
		{"empty value", func(o *crdt.Op) { o.Value = nil }, ErrInvalidValue},
	}
	for _, c := range cases {
		op := base()
		c.edit(op)
		err := s.ValidateOp(op)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestSchemaValidateValue(t *testing.T) {
	s := Default()
	if err := s.ValidateValue("people", "risk_flags", mv(t, "dog")); err != nil {
		t.Fatal(err)
	}
	if err := s.ValidateValue("people", "risk_flags", mv(t, "cat")); !errors.Is(err, ErrInvalidValue) {
		t.Fatal(err)
	}
	if err := s.ValidateValue("people", "nope", mv(t, "x")); !errors.Is(err, ErrUnknownField) {
		t.Fatal(err)
	}
	if err := s.ValidateValue("nope", "x", mv(t, "x")); !errors.Is(err, ErrUnknownCollection) {
		t.Fatal(err)
	}
}

func TestNHSNumber(t *testing.T) {
	cases := []struct {
		s    string
		want bool
	}{
		{"9434765919", true},  // worked example in the research notes
		{"9990000018", true},  // 999 test range
		{"9990000026", true},  // 999 test range
		{"9990000034", true},  // 999 test range
		{"9990000042", true},  // 999 test range
		{"9990000050", true},  // 999 test range
		{"9990000069", true},  // 999 test range
		{"1234567890", false}, // wrong check digit
		{"9876544321", false}, // the Data Dictionary's display example fails mod 11
		{"9434765918", false}, // check digit off by one
		{"9990000019", false},
		{"0000000000", true}, // sum 0 → 11 → check 0
		{"943476591", false}, // 9 digits
		{"94347659190", false},
		{"943 476 5919", false}, // spaces are display only
		{"943476591a", false},
		{"", false},
	}
	for _, c := range cases {
		if got := ValidNHSNumber(c.s); got != c.want {
			t.Errorf("ValidNHSNumber(%q) = %v, want %v (%v)", c.s, got, c.want, CheckNHSNumber(c.s))
		}
	}
	// Nine digits whose check would be 10 have no valid number at all.
	tens := 0
	for n := 999000000; n < 999000200; n++ {
		first9 := strings.TrimLeft(itoa9(n), "")
		check, ok := NHSCheckDigit(first9)
		valid := 0
		for d := byte('0'); d <= '9'; d++ {
			if ValidNHSNumber(first9 + string(d)) {
				valid++
			}
		}
		if !ok {
			tens++
			if valid != 0 {
				t.Fatalf("%s: check 10 but %d valid numbers", first9, valid)
			}
			if err := CheckNHSNumber(first9 + "0"); err == nil || !strings.Contains(err.Error(), "10") {
				t.Fatalf("%s0: %v", first9, err)
			}
			continue
		}
		if valid != 1 || !ValidNHSNumber(first9+string(rune('0'+check))) {
			t.Fatalf("%s: check %d, %d valid", first9, check, valid)
		}
		if !IsTestNHSNumber(first9 + string(rune('0'+check))) {
			t.Fatalf("%s%d not a test number", first9, check)
		}
	}
	if tens == 0 {
		t.Fatal("no check-10 prefix in the sample; the loop tests nothing")
	}
	if IsTestNHSNumber("9434765919") {
		t.Fatal("9434765919 is not in the 999 range")
	}
}

func itoa9(n int) string {
	b := make([]byte, 9)
	for i := 8; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b)
}

func TestParseRejects(t *testing.T) {
	cases := map[string]string{
		"not json":             `{`,
		"trailing":             `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"string"}]}]} {}`,
		"trailing ]":           `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"string"}]}]}]`,
		"version 0":            `{"version":0,"collections":[{"name":"a","fields":[{"name":"x","type":"string"}]}]}`,
		"no collections":       `{"version":1,"collections":[]}`,
		"unknown key":          `{"version":1,"colour":"red","collections":[{"name":"a","fields":[{"name":"x","type":"string"}]}]}`,
		"bad collection name":  `{"version":1,"collections":[{"name":"A b","fields":[{"name":"x","type":"string"}]}]}`,
		"duplicate collection": `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"string"}]},{"name":"a","fields":[{"name":"x","type":"string"}]}]}`,
		"no fields":            `{"version":1,"collections":[{"name":"a","fields":[]}]}`,
		"duplicate field":      `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"string"},{"name":"x","type":"int"}]}]}`,
		"reserved field":       `{"version":1,"collections":[{"name":"a","fields":[{"name":"_deleted","type":"bool"}]}]}`,
		"unknown crdt":         `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","crdt":"counter","type":"int"}]}]}`,
		"unknown type":         `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"float"}]}]}`,
		"enum no values":       `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"enum"}]}]}`,
		"enum dup values":      `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"enum","values":["a","a"]}]}]}`,
		"unknown named enum":   `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"enum","enum":"nope"}]}]}`,
		"values on string":     `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"string","values":["a"]}]}]}`,
		"min above max":        `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"int","min":5,"max":1}]}]}`,
		"min on string":        `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"string","min":1}]}]}`,
		"max_length on int":    `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"int","max_length":3}]}]}`,
		"object no properties": `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"object"}]}]}`,
		"unknown check":        `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"object","check":"magic","properties":[{"name":"y","type":"int"}]}]}]}`,
		"transitions on int":   `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"int","transitions":{"a":["b"]}}]}]}`,
		"transition bad from":  `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"enum","values":["a","b"],"transitions":{"c":["b"]}}]}]}`,
		"transition bad to":    `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"enum","values":["a","b"],"transitions":{"a":["c"]}}]}]}`,
		"crdt on property":     `{"version":1,"collections":[{"name":"a","fields":[{"name":"x","type":"object","properties":[{"name":"y","crdt":"set","type":"int"}]}]}]}`,
	}
	for name, src := range cases {
		if _, err := Parse([]byte(src)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if _, err := Parse(make([]byte, MaxFileSize+1)); err == nil {
		t.Error("oversized file parsed")
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "schema.json")
	if err := os.WriteFile(path, DefaultJSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Version() != Default().Version() {
		t.Fatal("loaded a different version")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("loaded a missing file")
	}
}

func TestExtend(t *testing.T) {
	base := Default()
	op := writeOp(t, "people", "allotment_plot", "14b")
	if err := base.ValidateOp(op); !errors.Is(err, ErrUnknownField) {
		t.Fatalf("before extension: %v", err)
	}
	ext := []byte(`{"version": 2, "enums": {"need_category": ["gardening"]}, "collections": [
		{"name": "people", "fields": [{"name": "allotment_plot", "type": "string", "max_length": 10}]},
		{"name": "home_equipment", "fields": [{"name": "item", "type": "string", "required_on_create": true}]}]}`)
	s2, err := base.Extend(ext)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Version() != 2 || base.Version() != 1 {
		t.Fatalf("versions %d, %d", s2.Version(), base.Version())
	}
	if err := s2.ValidateOp(op); err != nil {
		t.Fatalf("after extension: %v", err)
	}
	if err := base.ValidateOp(op); !errors.Is(err, ErrUnknownField) {
		t.Fatalf("base changed by Extend: %v", err)
	}
	if err := s2.ValidateOp(writeOp(t, "needs", "category", "gardening")); err != nil {
		t.Fatalf("extended enum: %v", err)
	}
	if err := base.ValidateOp(writeOp(t, "needs", "category", "gardening")); err == nil {
		t.Fatal("base enum changed by Extend")
	}
	if _, ok := s2.Collection("home_equipment"); !ok {
		t.Fatal("new collection missing")
	}
	if err := base.Compatible(s2); err != nil {
		t.Fatalf("extension not compatible: %v", err)
	}
	if err := s2.Compatible(base); err == nil {
		t.Fatal("downgrade reported compatible")
	}
	for name, bad := range map[string]string{
		"same version": `{"version": 1, "collections": []}`,
		"redefine":     `{"version": 3, "collections": [{"name": "people", "fields": [{"name": "cfs", "type": "string"}]}]}`,
		"bad field":    `{"version": 3, "collections": [{"name": "people", "fields": [{"name": "x", "type": "float"}]}]}`,
	} {
		if _, err := base.Extend([]byte(bad)); err == nil {
			t.Errorf("%s: extended", name)
		}
	}
	// A newer file that changes a field's CRDT type is not compatible.
	changed := strings.Replace(string(DefaultJSON()), `"name": "tags", "crdt": "set"`, `"name": "tags", "crdt": "log"`, 1)
	changed = strings.Replace(changed, `"version": 1`, `"version": 2`, 1)
	s3, err := Parse([]byte(changed))
	if err != nil {
		t.Fatal(err)
	}
	if err := base.Compatible(s3); err == nil {
		t.Fatal("crdt type change reported compatible")
	}
}

func TestDecodeValueBounds(t *testing.T) {
	cases := map[string][]byte{
		"str32 claims 4GB":     {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},
		"bin32 claims 4GB":     {0xc6, 0xff, 0xff, 0xff, 0xff},
		"array32 claims 4G":    {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01},
		"map32 claims 4G":      {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a', 0x01},
		"ext":                  {0xd4, 0x01, 0x00},
		"never used 0xc1":      {0xc1},
		"int key":              {0x81, 0x01, 0x02},
		"duplicate key":        {0x82, 0xa1, 'a', 0x01, 0xa1, 'a', 0x02},
		"empty":                {},
		"deep arrays":          append(bytesOf(0x91, MaxValueDepth+2), 0x01),
		"truncated float64":    {0xcb, 0x00},
		"truncated uint16 len": {0xda, 0x00},
	}
	for name, b := range cases {
		if _, err := DecodeValue(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	ok := map[string]any{
		"nil": nil, "int": int64(-5), "big": uint64(1 << 63), "str": "é", "float": 1.5, "bool": true,
		"array": []any{int64(1), "a"}, "map": map[string]any{"k": []any{}},
	}
	for name, v := range ok {
		got, err := DecodeValue(mv(t, v))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if name != "array" && name != "map" && got != v {
			t.Errorf("%s: got %#v want %#v", name, got, v)
		}
	}
	if _, err := DecodeValue(append(bytesOf(0x91, MaxValueDepth), 0x01)); err != nil {
		t.Errorf("max depth: %v", err)
	}
}

func bytesOf(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

func TestTransitions(t *testing.T) {
	f, _ := Default().Field("onward_referrals", "status")
	for _, c := range []struct {
		from, to string
		want     bool
	}{
		{"suggested", "sent", true},
		{"sent", "accepted", true},
		{"accepted", "attended_first", true},
		{"attended_first", "ongoing", true},
		{"ongoing", "completed", true},
		{"sent", "sent", true},
		{"sent", "completed", false},
		{"completed", "sent", false},
		{"rejected", "accepted", false},
		{"suggested", "ongoing", false},
	} {
		if got := f.Allows(c.from, c.to); got != c.want {
			t.Errorf("onward status %s → %s: %v", c.from, c.to, got)
		}
	}
	r, _ := Default().Field("referrals", "status")
	if !r.Allows("received", "contact_attempted") || !r.Allows("on_hold", "active") || r.Allows("closed", "active") {
		t.Error("referral lifecycle")
	}
	g, _ := Default().Field("goals", "status")
	if g.Transitions != nil || !g.Allows("achieved", "not_started") {
		t.Error("a field without transitions allows any move")
	}
}
