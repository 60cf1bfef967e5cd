package sync

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

// TestOpValidatorMatchesSchema: the push's validator memo (opValidator)
// gives every op the verdict schema.Schema.ValidateOp gives it (the same
// error text, and the same unknown_field / invalid_value code), over runs
// of records that name the schema's fields in one order, now and then
// another order, another collection, a field or collection the schema
// lacks, the delete register, kinds the field's type refuses and values
// of every shape; and with a Validator that is not a *schema.Schema.
func TestOpValidatorMatchesSchema(t *testing.T) {
	rng := rand.New(rand.NewSource(testSeed(t)))
	s := schema.Default()
	colls := s.Collections()
	values := []any{"a value", "", 7, -3, 1 << 40, true, false, nil, 2.5, []any{"x"}, map[string]any{"k": "v"},
		"2026-12-01", "active", "SW1A 1AA", string(make([]byte, 300))}
	kinds := []crdt.Kind{crdt.KindWrite, crdt.KindWrite, crdt.KindWrite, crdt.KindAdd, crdt.KindRemove, crdt.KindAppend}
	rep := crdt.NewReplicaID()
	var ops []crdt.Op
	ms := int64(1_000_000)
	for range 400 {
		c := colls[rng.Intn(len(colls))]
		collName := c.Name
		if rng.Intn(30) == 0 {
			collName = "no_such_collection"
		}
		order := make([]int, len(c.Fields))
		for i := range order {
			order[i] = i
		}
		if rng.Intn(5) == 0 {
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		id := fmt.Sprint("r", rng.Intn(1000))
		for _, k := range order[:1+rng.Intn(len(order))] {
			f := c.Fields[k]
			name := f.Name
			switch rng.Intn(40) {
			case 0:
				name = "no_such_field"
			case 1:
				name = crdt.DeletedField
			}
			kind := crdt.KindWrite
			switch f.CRDT {
			case crdt.Set:
				kind = crdt.KindAdd
			case crdt.Log:
				kind = crdt.KindAppend
			}
			if rng.Intn(8) == 0 {
				kind = kinds[rng.Intn(len(kinds))]
			}
			ms++
			op := crdt.Op{ID: crdt.OpID{Time: crdt.MakeTimestamp(ms, 0), Replica: rep}, Team: "t", Collection: collName, Record: id, Field: name, Kind: kind}
			if kind != crdt.KindRemove || rng.Intn(2) == 0 {
				op.Value = crdt.MustValue(values[rng.Intn(len(values))])
				if len(f.Enum) > 0 && rng.Intn(2) == 0 {
					op.Value = crdt.MustValue(f.Enum[rng.Intn(len(f.Enum))])
				}
			}
			ops = append(ops, op)
		}
	}
	check := func(name string, v Validator) {
		m := newOpValidator(v)
		seen := map[string]int{}
		for i := range ops {
			op := &ops[i]
			want, got := v.ValidateOp(op), m.validate(op)
			if (want == nil) != (got == nil) || want != nil && (want.Error() != got.Error() || validatorCode(want) != validatorCode(got)) {
				t.Fatalf("%s: op %d (%s.%s, %s): memo %v, validator %v", name, i, op.Collection, op.Field, op.Kind, got, want)
			}
			if want == nil {
				seen["ok"]++
			} else {
				seen[string(validatorCode(want))]++
				if errors.Is(want, schema.ErrWrongType) {
					seen["wrong type"]++
				}
			}
		}
		if seen["ok"] == 0 || seen["unknown_field"] == 0 || seen["invalid_value"] == 0 || seen["wrong type"] == 0 {
			t.Fatalf("%s: too tame: %v", name, seen)
		}
		t.Logf("%s: %d ops: %v", name, len(ops), seen)
	}
	check("schema", s)
	check("other validator", wrapValidator{s})
}

// wrapValidator is a Validator that is not a *schema.Schema.
type wrapValidator struct{ s *schema.Schema }

func (w wrapValidator) ValidateOp(op *crdt.Op) error { return w.s.ValidateOp(op) }

// TestIsTermField: the length prefilter answers as termFields does, for
// every term field, names of their lengths that are not ones, and others.
func TestIsTermField(t *testing.T) {
	names := []string{"f00", "", "x", "given_nam", "given_namf", "postcodes", "postcod", "nhs_numbe", string(make([]byte, 64)), string(make([]byte, 80))}
	for f := range termFields {
		names = append(names, f, f+"x", f[:len(f)-1]+"_")
	}
	for _, n := range names {
		if isTermField(n) != termFields[n] {
			t.Fatalf("%q: isTermField %v, termFields %v", n, isTermField(n), termFields[n])
		}
	}
}
