// Command doorstep is the Doorstep server binary.
//
//	doorstep serve --data DIR --addr HOST:PORT [--demo] [--log-format json|text] [--schema-extension FILE]
//	doorstep team add --data DIR --id ID --name NAME
//	doorstep team list --data DIR
//	doorstep user add --data DIR --username U --name N --role R --teams a,b
//	doorstep user list --data DIR
//
// serve --demo seeds the demo dataset (package demo) into an empty data
// directory and, on every start, prints a banner for a person on stderr:
// the address, the demo users and their password, curl lines for the Wigan
// coordinator (log in, list conflicts, show and resolve the waiting one)
// and a cmd/doorstep-tablet example.
//
// Flags --data and --addr may also come from DOORSTEP_DATA and
// DOORSTEP_ADDR. user add reads the password from DOORSTEP_PASSWORD or, if
// that is unset, from the first line of standard input. The admin commands
// open the stores directly, so run them while the server is stopped (or use
// the admin HTTP API). SIGINT or SIGTERM shuts the server down gracefully:
// it stops accepting, finishes in-flight syncs, and closes Badger cleanly.
//
// The command owns flag parsing, signal handling and the wiring of
// packages server, auth, sync, schema and demo; it holds no logic of its
// own that tests cannot reach (run, the CLI and the banner are called
// directly by its tests). It must not be imported, and must not reach
// into Badger or the engine's key layout: admin commands go through auth
// and sync like the HTTP API does.
package main
