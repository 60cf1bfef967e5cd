// Package backup owns Doorstep's backup file format: writing a
// self-describing, checksummed file from consistent snapshots of the
// server's stores, verifying one, and loading one into empty Badger
// databases. The byte layout, its version and how it may evolve are
// specified in FORMAT.md next to this file; this package is its only
// writer and reader.
//
// backup knows Badger transactions (and, through Iterator, any store's
// ordered iteration) and nothing of Doorstep's key layout: the caller
// (package server for an online backup, cmd/doorstep for a restore) says
// which sections there are, hands it one read transaction or iterator per
// section, and opens the databases a restore loads into. It must not
// import server, sync, store or auth, so both the server and the binary
// can use it without an import cycle.
//
// # Durability
//
// WriteFile writes to a temporary file beside the destination, fsyncs it,
// renames it into place and fsyncs the directory. A process killed at any
// point leaves either no file under the destination name or a complete,
// verified one; the temporary file it may leave behind has no trailer and
// is refused by Verify with ErrIncomplete.
package backup
