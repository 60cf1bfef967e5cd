// Package badgeropen opens Badger databases for every Doorstep store (the
// server's record store, the auth store and the SDK's device replica) and
// recovers from leftovers of a crash that Badger itself refuses to open
// past.
//
// Today that is one: a zero-length memtable write-ahead file (*.mem) left
// when the process is killed between creating the file and sizing it
// (upstream dgraph-io/badger#2207). Badger then fails every open with
// "while opening memtables … Create a new file". A zero-length file holds
// no entries, so removing it loses nothing; Open does that, logs it, and
// opens again.
//
// The package owns opening only. It must not know any store's key layout,
// options or migrations (each store passes its own badger.Options and
// versions its own layout), and it imports nothing of Doorstep's.
package badgeropen
