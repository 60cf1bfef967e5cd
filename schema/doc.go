// Package schema describes Doorstep's collections as data and validates ops
// against them. It owns the default home-visit schema (default.json,
// embedded), the value types and constraints of every field, which fields
// are clinically significant, and the definitions of the free outcome
// instruments (ONS4, UCLA-3, the ONS direct loneliness question).
//
// It is a leaf read by both the sync engine and the client SDK, so that a
// tablet and the server validate alike. It imports only crdt and the
// standard library, and must not import engine, storage, HTTP or SDK code.
//
// # The schema file
//
// A schema is a JSON document with a version, shared enums and collections;
// each collection lists its fields:
//
//	{"version": 1, "enums": {"need_category": ["mobility_falls", …]},
//	 "collections": [{"name": "people", "fields": [
//	   {"name": "nhs_number", "type": "nhs_number", "clinical": true},
//	   {"name": "cfs", "type": "int", "min": 1, "max": 9, "clinical": true},
//	   {"name": "risk_flags", "crdt": "set", "type": "enum", "values": ["dog", …]}]}]}
//
// A field's crdt type is "register" (the default), "set" or "log"; its value
// type is one of string, text, int, bool, date, datetime, enum, nhs_number,
// object or int_map (see ValueType). Values travel msgpack-encoded in op
// values: strings for string, text, date ("2006-01-02"), datetime (RFC 3339),
// enum and nhs_number; integers for int; maps with string keys for object
// and int_map. A register write of nil clears the field.
//
// # Clinical fields and who settles their conflicts
//
// A register field marked "clinical" is clinically significant: a conflict
// on it (concurrent writes) is never settled by accident. "settled_by"
// lists the roles that may settle one (Roles names them); a clinical field
// without it takes DefaultSettledBy, coordinators only. It is allowed only
// on clinical registers:
//
//	{"name": "cfs", "type": "int", "min": 1, "max": 9, "clinical": true, "settled_by": ["coordinator"]},
//	{"name": "address", "type": "text", "clinical": true, "settled_by": ["coordinator", "admin"]}
//
// MaySettle answers for a role. The sync engine refuses a settling write
// from another role and quarantines an ordinary write that would drop
// another author's concurrent value from the conflict; the SDK refuses
// both before writing (docs/PROTOCOL.md §11.1). On a field that is not
// clinical any team member settles a conflict, and an ordinary edit made
// through the SDK still overwrites only its own device's values.
//
// # Evolution
//
// A schema only grows: a newer version may add collections, fields and enum
// values (Extend, or Parse of a newer file with a higher version) but must
// not change or drop a field, because records already hold state of that
// field's CRDT type (Compatible checks this). Two rules keep data safe while
// devices and the server run different versions:
//
//   - A device on an older schema version validates only its own writes.
//     Ops it pulls for fields it does not know must be stored and passed
//     through unchanged (the SDK must never drop them), so nothing is lost
//     when the app is later upgraded.
//   - The server validates every pushed op against its own schema. An op on
//     a collection or field it does not know (ErrUnknownCollection,
//     ErrUnknownField), or with a value it rejects, is quarantined with the
//     reason rather than dropped; once the server's schema is extended, an
//     admin re-applies it and it validates.
//
// # Teams
//
// Every record belongs to exactly one team, fixed by its first op
// (crdt.Record.Team); the sync engine scopes reads and writes by it. The
// schema does not vary ownership by collection: a service that shares a
// directory between teams gives each team its own copy.
//
// # Instruments and outcomes
//
// Instruments lists the instrument definitions; ValidateResponse checks an
// assessments response (ValidateOp calls it for the responses log), and
// ONS4Outcomes and SummariseONS4 turn assessments records into the ONS4
// first-versus-last outcomes commissioners ask for, excluding proxy
// answers and never summing the four items. Licensed instruments (SWEMWBS,
// the Clinical Frailty Scale, PAM) are score-only: no item text ships.
//
// # Clinical fields
//
// A field marked clinical is clinically significant (NHS number, date of
// birth, frailty scores received, consent decisions, …). Concurrent writes
// to it must never be auto-resolved in any view: readers show every value
// and flag the record for a coordinator's review.
package schema
