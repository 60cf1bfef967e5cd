// Package layout versions the key layout of a Badger store: it reads a
// version key, stamps a new store with the current version, upgrades an
// older one by running its migrations in order (each in its own
// transaction, the version bumped in the same transaction), and refuses a
// store written by a newer build. The SDK's device replica uses it (the
// server's record store and the auth store keep their own versions of the
// same rule).
//
// The package owns the version bookkeeping only. Each store owns its
// version key, its current version and its migrations; this package must
// not know any store's keys beyond the one it is given, and imports nothing
// of Doorstep's.
package layout
