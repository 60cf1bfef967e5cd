// Package demo builds Doorstep's demo dataset: two teams (Wigan Frailty and
// Ashton PCN), their users and tablets, and the changes those tablets would
// have pushed over eight weeks of home visits and drop-ins (ending at the
// last Sunday, so that it is the same dataset every day), in the
// order they should be pushed.
//
// It is pure data generation: Build does no I/O, reads no clock (the caller
// passes now) and is deterministic for a seed. Every op it makes passes
// schema.Default().ValidateOp. The server's demo loader (cmd/doorstep serve
// --demo) creates the teams, users and devices and pushes the changes
// through the sync engine; tests do the same in memory.
//
// The data is synthetic. NHS numbers come only from the 999 test range,
// which is never issued. Organisation names are generic descriptions, not
// real bodies. Passwords are demo-only (DemoPassword) and must never be
// used outside a demo.
//
// The dataset leaves real concurrent-edit conflicts for the coordinators
// (see Dataset.Conflicts): in Wigan, a link worker and the health and
// wellbeing coach, both working from the same synced record, record
// different Clinical Frailty Scale levels for the same person (a clinical
// field, never auto-resolved); in Ashton, the two link workers update a
// directory entry's schedule differently (not clinical).
//
// demo imports crdt, api and schema only; it must not import the engine,
// storage, server or SDK.
package demo
