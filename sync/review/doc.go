// Package review is the vocabulary of the sync engine's review queries:
// who asks (Caller, as the server authenticated them), what a query takes
// and gives back (ChangedFilter, ChangedEntry, HistoryEntry,
// FieldConflict, QuarantinedOp), the bounds on a query's arguments, and
// the sentinel errors a reviewer branches on.
//
// It exists so that the coordinator console (package web) can speak to
// the engine through a small interface of its own without importing
// package sync, and so without reaching the store: package sync aliases
// every name here (sync.Caller is review.Caller, sync.ErrNotFound is
// review.ErrNotFound), so errors.Is and type identity hold across both.
//
// It owns type definitions only. It must not hold engine logic, read or
// write storage, or import anything of ours beyond api and crdt.
package review
