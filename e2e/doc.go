// Package e2e holds Doorstep's server-level end-to-end tests: a real server
// (package server) on a loopback listener with real Badger stores in temporary
// directories, driven with real HTTP, JSON and msgpack bytes, as a tablet or a
// coordinator's browser would. It has no non-test code beyond this comment
// and must not be imported.
package e2e
