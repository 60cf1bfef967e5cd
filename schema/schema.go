package schema

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"

	"github.com/doorstep-health/doorstep/crdt"
)

//go:embed default.json
var defaultJSON []byte

// DefaultJSON returns a copy of the embedded default home-visit schema file.
func DefaultJSON() []byte { return bytes.Clone(defaultJSON) }

// MaxFileSize bounds the size of a schema file Parse accepts.
const MaxFileSize = 1 << 20

// Default string length limits, used when a field sets no max_length.
const (
	DefaultStringMax = 500
	DefaultTextMax   = 20000
)

// ValueType is the type of a field's values.
type ValueType string

// The value types.
const (
	TypeString    ValueType = "string"     // short text (names, codes, IDs)
	TypeText      ValueType = "text"       // free text (notes, what matters to me)
	TypeInt       ValueType = "int"        // integer, optionally within min..max
	TypeBool      ValueType = "bool"       // true or false
	TypeDate      ValueType = "date"       // "YYYY-MM-DD"
	TypeDateTime  ValueType = "datetime"   // RFC 3339
	TypeEnum      ValueType = "enum"       // one of a closed list of strings
	TypeNHSNumber ValueType = "nhs_number" // 10 digits passing the mod-11 check
	TypeObject    ValueType = "object"     // map with string keys, validated by properties
	TypeIntMap    ValueType = "int_map"    // map from string keys to integers (instrument answers)
)

var valueTypes = []ValueType{TypeString, TypeText, TypeInt, TypeBool, TypeDate, TypeDateTime, TypeEnum, TypeNHSNumber, TypeObject, TypeIntMap}

// CheckInstrumentResponse names the object check that validates an
// instrument response: the object's "instrument" property names an
// instrument and its "answers" int_map must satisfy ValidateResponse.
const CheckInstrumentResponse = "instrument_response"

// Schema is a parsed, checked schema. It is immutable and safe for
// concurrent use.
type Schema struct {
	file        fileSchema
	version     int
	collections []*Collection
	byName      map[string]*Collection
}

// Collection is one collection of records and its fields.
type Collection struct {
	Name        string
	Description string
	// Fields in declaration order.
	Fields []*Field
	byName map[string]*Field
}

// Field describes one field: its CRDT type, value type and constraints.
type Field struct {
	Name        string
	Description string
	// CRDT is the field's merge type; a register unless the file says
	// otherwise.
	CRDT crdt.FieldType
	// Type is the value type of a register's value, a set's elements or a
	// log's entries.
	Type ValueType
	// Enum lists the allowed values of an enum field.
	Enum []string
	// Min and Max bound int values (and each value of an int_map) when set.
	Min, Max *int64
	// MaxLength bounds string-like values in bytes.
	MaxLength int
	// RequiredOnCreate fields must be written when a record is created.
	RequiredOnCreate bool
	// Clinical fields are clinically significant: their conflicts are
	// never auto-resolved and are flagged for review.
	Clinical bool
	// SettledBy lists the roles that may settle a conflict on a clinical
	// field (a write whose pred covers every concurrent value); for a
	// clinical field without settled_by in the file it is
	// DefaultSettledBy. Nil for a field that is not clinical, whose
	// conflicts any team member may settle.
	SettledBy []string
	// Properties validate the keys of an object value.
	Properties []*Field
	// Transitions is an enum field's lifecycle: for each value, the values
	// that may follow it. A value with no entry is final. It is advisory
	// (see Allows); nil means any order.
	Transitions map[string][]string
	// Check names a built-in cross-property check of an object value;
	// the only one is CheckInstrumentResponse. Properties of an object
	// with required_on_create set must be present in every value.
	Check string

	enumSet map[string]bool
	props   map[string]*Field
}

// fileSchema is the JSON form of a schema.
type fileSchema struct {
	Version     int                 `json:"version"`
	Name        string              `json:"name,omitempty"`
	Description string              `json:"description,omitempty"`
	Enums       map[string][]string `json:"enums,omitempty"`
	Collections []fileCollection    `json:"collections"`
}

type fileCollection struct {
	Name        string      `json:"name"`
	Description string      `json:"description,omitempty"`
	Fields      []fileField `json:"fields"`
}

type fileField struct {
	Name             string              `json:"name"`
	Description      string              `json:"description,omitempty"`
	CRDT             string              `json:"crdt,omitempty"`
	Type             string              `json:"type"`
	Values           []string            `json:"values,omitempty"`
	Enum             string              `json:"enum,omitempty"`
	Min              *int64              `json:"min,omitempty"`
	Max              *int64              `json:"max,omitempty"`
	MaxLength        int                 `json:"max_length,omitempty"`
	RequiredOnCreate bool                `json:"required_on_create,omitempty"`
	Clinical         bool                `json:"clinical,omitempty"`
	SettledBy        []string            `json:"settled_by,omitempty"`
	Properties       []fileField         `json:"properties,omitempty"`
	Check            string              `json:"check,omitempty"`
	Transitions      map[string][]string `json:"transitions,omitempty"`
}

var defaultSchema = func() *Schema {
	s, err := Parse(defaultJSON)
	if err != nil {
		panic(fmt.Sprintf("schema: embedded default.json is invalid: %v", err)) // caught by tests; never ships broken
	}
	return s
}()

// Default returns the default home-visit schema embedded in the binary.
func Default() *Schema { return defaultSchema }

// Load reads and parses a schema file.
func Load(path string) (*Schema, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load schema: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load schema %s: %w", path, err)
	}
	return s, nil
}

// Parse parses and checks a schema file: a positive version, unique names,
// known CRDT and value types, enums with values, sane constraints. It never
// panics on bad input.
func Parse(data []byte) (*Schema, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("parse schema: file is %d bytes, limit %d", len(data), MaxFileSize)
	}
	var f fileSchema
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("parse schema: trailing data after the schema object")
	}
	return build(f)
}

// nameRE is the form of collection, field, property and enum names.
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// enumValueRE is the form of enum values.
var enumValueRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$`)

func build(f fileSchema) (*Schema, error) {
	if f.Version < 1 {
		return nil, fmt.Errorf("parse schema: version %d, want 1 or more", f.Version)
	}
	for name, vals := range f.Enums {
		if !nameRE.MatchString(name) {
			return nil, fmt.Errorf("parse schema: enum name %q is not lower_snake_case", name)
		}
		if err := checkEnumValues(vals); err != nil {
			return nil, fmt.Errorf("parse schema: enum %s: %w", name, err)
		}
	}
	if len(f.Collections) == 0 {
		return nil, fmt.Errorf("parse schema: no collections")
	}
	s := &Schema{file: f, version: f.Version, byName: map[string]*Collection{}}
	for _, fc := range f.Collections {
		if !nameRE.MatchString(fc.Name) {
			return nil, fmt.Errorf("parse schema: collection name %q is not lower_snake_case", fc.Name)
		}
		if _, dup := s.byName[fc.Name]; dup {
			return nil, fmt.Errorf("parse schema: collection %s defined twice", fc.Name)
		}
		c := &Collection{Name: fc.Name, Description: fc.Description, byName: map[string]*Field{}}
		if len(fc.Fields) == 0 {
			return nil, fmt.Errorf("parse schema: collection %s has no fields", fc.Name)
		}
		for _, ff := range fc.Fields {
			if ff.Name == crdt.DeletedField {
				return nil, fmt.Errorf("parse schema: %s.%s: reserved field name", fc.Name, ff.Name)
			}
			fld, err := buildField(f.Enums, ff, 0)
			if err != nil {
				return nil, fmt.Errorf("parse schema: %s.%w", fc.Name, err)
			}
			if _, dup := c.byName[fld.Name]; dup {
				return nil, fmt.Errorf("parse schema: %s.%s defined twice", fc.Name, fld.Name)
			}
			c.Fields = append(c.Fields, fld)
			c.byName[fld.Name] = fld
		}
		s.collections = append(s.collections, c)
		s.byName[c.Name] = c
	}
	return s, nil
}

func checkEnumValues(vals []string) error {
	if len(vals) == 0 {
		return fmt.Errorf("no values")
	}
	seen := map[string]bool{}
	for _, v := range vals {
		if !enumValueRE.MatchString(v) {
			return fmt.Errorf("value %q is not a plain code", v)
		}
		if seen[v] {
			return fmt.Errorf("value %q listed twice", v)
		}
		seen[v] = true
	}
	return nil
}

const maxPropertyDepth = 3

func buildField(enums map[string][]string, ff fileField, depth int) (*Field, error) {
	if !nameRE.MatchString(ff.Name) {
		return nil, fmt.Errorf("%q: name is not lower_snake_case", ff.Name)
	}
	fld := &Field{
		Name: ff.Name, Description: ff.Description, Type: ValueType(ff.Type),
		Min: ff.Min, Max: ff.Max, MaxLength: ff.MaxLength,
		RequiredOnCreate: ff.RequiredOnCreate, Clinical: ff.Clinical, Check: ff.Check,
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s", ff.Name, fmt.Sprintf(format, args...))
	}
	if err := buildSettledBy(fld, ff, depth); err != nil {
		return nil, bad("%v", err)
	}
	fld.CRDT = crdt.Register
	if ff.CRDT != "" {
		t, err := crdt.ParseFieldType(ff.CRDT)
		if err != nil {
			return nil, bad("crdt type %q: want register, set or log", ff.CRDT)
		}
		fld.CRDT = t
	}
	if depth > 0 && ff.CRDT != "" {
		return nil, bad("a property has no crdt type")
	}
	if !slices.Contains(valueTypes, fld.Type) {
		return nil, bad("unknown value type %q", ff.Type)
	}
	if fld.Type == TypeEnum {
		vals := ff.Values
		switch {
		case ff.Enum != "" && len(ff.Values) > 0:
			return nil, bad("both values and a named enum")
		case ff.Enum != "":
			named, ok := enums[ff.Enum]
			if !ok {
				return nil, bad("unknown enum %q", ff.Enum)
			}
			vals = named
		}
		if err := checkEnumValues(vals); err != nil {
			return nil, bad("%v", err)
		}
		fld.Enum = slices.Clone(vals)
		fld.enumSet = map[string]bool{}
		for _, v := range vals {
			fld.enumSet[v] = true
		}
	} else if ff.Enum != "" || len(ff.Values) > 0 {
		return nil, bad("enum values on a %s field", ff.Type)
	}
	if len(ff.Transitions) > 0 {
		if fld.Type != TypeEnum {
			return nil, bad("transitions on a %s field", ff.Type)
		}
		fld.Transitions = map[string][]string{}
		for from, tos := range ff.Transitions {
			if !fld.enumSet[from] {
				return nil, bad("transition from %q, which is not an allowed value", from)
			}
			for _, to := range tos {
				if !fld.enumSet[to] {
					return nil, bad("transition %s → %q, which is not an allowed value", from, to)
				}
			}
			fld.Transitions[from] = slices.Clone(tos)
		}
	}
	if (ff.Min != nil || ff.Max != nil) && fld.Type != TypeInt && fld.Type != TypeIntMap {
		return nil, bad("min or max on a %s field", ff.Type)
	}
	if ff.Min != nil && ff.Max != nil && *ff.Min > *ff.Max {
		return nil, bad("min %d above max %d", *ff.Min, *ff.Max)
	}
	switch fld.Type {
	case TypeString:
		if fld.MaxLength == 0 {
			fld.MaxLength = DefaultStringMax
		}
	case TypeText:
		if fld.MaxLength == 0 {
			fld.MaxLength = DefaultTextMax
		}
	default:
		if ff.MaxLength != 0 {
			return nil, bad("max_length on a %s field", ff.Type)
		}
	}
	if fld.MaxLength < 0 {
		return nil, bad("negative max_length")
	}
	if fld.Type == TypeObject {
		if depth >= maxPropertyDepth {
			return nil, bad("objects nested deeper than %d", maxPropertyDepth)
		}
		if len(ff.Properties) == 0 {
			return nil, bad("object without properties")
		}
		fld.props = map[string]*Field{}
		for _, fp := range ff.Properties {
			p, err := buildField(enums, fp, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s.%w", ff.Name, err)
			}
			if _, dup := fld.props[p.Name]; dup {
				return nil, bad("property %s defined twice", p.Name)
			}
			fld.Properties = append(fld.Properties, p)
			fld.props[p.Name] = p
		}
	} else if len(ff.Properties) > 0 {
		return nil, bad("properties on a %s field", ff.Type)
	}
	switch ff.Check {
	case "":
	case CheckInstrumentResponse:
		if fld.Type != TypeObject {
			return nil, bad("check %s needs an object field", ff.Check)
		}
		in, ok := fld.props["instrument"]
		if !ok || (in.Type != TypeEnum && in.Type != TypeString) {
			return nil, bad("check %s needs an enum or string property \"instrument\"", ff.Check)
		}
		if a, ok := fld.props["answers"]; !ok || a.Type != TypeIntMap {
			return nil, bad("check %s needs an int_map property \"answers\"", ff.Check)
		}
	default:
		return nil, bad("unknown check %q", ff.Check)
	}
	return fld, nil
}

// Version returns the schema's version. Versions only grow.
func (s *Schema) Version() int { return s.version }

// Collection returns the named collection.
func (s *Schema) Collection(name string) (*Collection, bool) {
	c, ok := s.byName[name]
	return c, ok
}

// Collections returns the collections in declaration order. The slice is
// a copy; the collections are shared and must not be modified.
func (s *Schema) Collections() []*Collection { return slices.Clone(s.collections) }

// Field returns the named field of the collection.
func (c *Collection) Field(name string) (*Field, bool) {
	f, ok := c.byName[name]
	return f, ok
}

// Field returns the named field of the named collection.
func (s *Schema) Field(collection, field string) (*Field, bool) {
	c, ok := s.byName[collection]
	if !ok {
		return nil, false
	}
	return c.Field(field)
}

// Clinical reports whether a field is clinically significant: conflicts
// there are never auto-resolved and are flagged for review. Unknown fields
// report false.
func (s *Schema) Clinical(collection, field string) bool {
	f, ok := s.Field(collection, field)
	return ok && f.Clinical
}

// MissingOnCreate returns, in declaration order, the required_on_create
// fields of the collection that are not among fields. It returns nil for
// an unknown collection (ValidateOp reports that).
func (s *Schema) MissingOnCreate(collection string, fields []string) []string {
	c, ok := s.byName[collection]
	if !ok {
		return nil
	}
	var missing []string
	for _, f := range c.Fields {
		if f.RequiredOnCreate && !slices.Contains(fields, f.Name) {
			missing = append(missing, f.Name)
		}
	}
	return missing
}

// Allows reports whether an enum field's lifecycle lets its value move
// from one value to another: always when the field has no transitions or
// the value does not change. It is advisory, for apps offering next steps
// and for review views flagging odd moves: ValidateOp cannot enforce it,
// because a register write does not carry the value it replaces and two
// concurrent writes may each be a valid step from the value both saw.
func (f *Field) Allows(from, to string) bool {
	if f.Transitions == nil || from == to {
		return true
	}
	return slices.Contains(f.Transitions[from], to)
}

// Property returns the named property of an object field.
func (f *Field) Property(name string) (*Field, bool) {
	p, ok := f.props[name]
	return p, ok
}

// JSON returns the schema as a schema file (indented JSON), e.g. for the
// server to hand to devices. Parse of the result gives an equal schema.
func (s *Schema) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(s.file, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode schema: %w", err)
	}
	return b, nil
}

// Extend returns a new schema: s with the collections, fields and enum
// values of the extension file data added. The extension has the same
// form as a schema file and a version above s's; it may add collections,
// add fields to existing collections, add named enums and append values to
// existing named enums, but not redefine an existing field. s is unchanged.
func (s *Schema) Extend(data []byte) (*Schema, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("extend schema: file is %d bytes, limit %d", len(data), MaxFileSize)
	}
	var ext fileSchema
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ext); err != nil {
		return nil, fmt.Errorf("extend schema: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("extend schema: trailing data after the schema object")
	}
	if ext.Version <= s.version {
		return nil, fmt.Errorf("extend schema: version %d is not above %d", ext.Version, s.version)
	}
	// Deep-copy the base file so s stays unchanged.
	var merged fileSchema
	raw, err := json.Marshal(s.file)
	if err != nil {
		return nil, fmt.Errorf("extend schema: %w", err)
	}
	if err := json.Unmarshal(raw, &merged); err != nil {
		return nil, fmt.Errorf("extend schema: %w", err)
	}
	merged.Version = ext.Version
	if ext.Description != "" {
		merged.Description = ext.Description
	}
	if merged.Enums == nil {
		merged.Enums = map[string][]string{}
	}
	for name, vals := range ext.Enums {
		for _, v := range vals {
			if !slices.Contains(merged.Enums[name], v) {
				merged.Enums[name] = append(merged.Enums[name], v)
			}
		}
	}
	for _, ec := range ext.Collections {
		i := slices.IndexFunc(merged.Collections, func(c fileCollection) bool { return c.Name == ec.Name })
		if i < 0 {
			merged.Collections = append(merged.Collections, ec)
			continue
		}
		if ec.Description != "" {
			merged.Collections[i].Description = ec.Description
		}
		for _, ef := range ec.Fields {
			if slices.ContainsFunc(merged.Collections[i].Fields, func(f fileField) bool { return f.Name == ef.Name }) {
				return nil, fmt.Errorf("extend schema: %s.%s already exists; fields cannot be redefined", ec.Name, ef.Name)
			}
			merged.Collections[i].Fields = append(merged.Collections[i].Fields, ef)
		}
	}
	out, err := build(merged)
	if err != nil {
		return nil, fmt.Errorf("extend schema: %w", err)
	}
	return out, nil
}

// Compatible reports whether newer may replace s: its version is not lower,
// and every collection and field of s still exists in newer with the same
// CRDT type and value type, so that stored state still fits. Enum values
// and constraints may change (ops already stored are not re-validated).
func (s *Schema) Compatible(newer *Schema) error {
	if newer.version < s.version {
		return fmt.Errorf("schema version %d is older than %d", newer.version, s.version)
	}
	for _, c := range s.collections {
		nc, ok := newer.byName[c.Name]
		if !ok {
			return fmt.Errorf("schema version %d drops collection %s", newer.version, c.Name)
		}
		for _, f := range c.Fields {
			nf, ok := nc.byName[f.Name]
			switch {
			case !ok:
				return fmt.Errorf("schema version %d drops field %s.%s", newer.version, c.Name, f.Name)
			case nf.CRDT != f.CRDT:
				return fmt.Errorf("schema version %d changes %s.%s from %s to %s", newer.version, c.Name, f.Name, f.CRDT, nf.CRDT)
			case nf.Type != f.Type:
				return fmt.Errorf("schema version %d changes %s.%s from %s to %s values", newer.version, c.Name, f.Name, f.Type, nf.Type)
			}
		}
	}
	return nil
}
