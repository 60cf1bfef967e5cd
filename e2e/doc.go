// Package e2e holds Doorstep's server-level end-to-end tests: a real server
// (package server) on a loopback listener with real Badger stores in temporary
// directories, driven with real HTTP, JSON and msgpack bytes, as a tablet or a
// coordinator's browser would. The backup and restore tests (restore_test.go,
// backup_kill_test.go) build cmd/doorstep and run it as real processes
// (serve, restore, team and user add), killing servers with SIGKILL. It has
// no non-test code beyond this comment and must not be imported.
//
// The SDK tests (newSDKEnv) run against a server with small pages (16 KiB)
// and a per-device rate limit of 5 requests a second after a burst of 20,
// and the SDK asks for pages of 25 items: paging and the SDK's waits on
// rate_limited are exercised by every such test, not bypassed. Run with -v
// to see which syncs waited.
//
// The multi-server tests (multiserver_test.go) run two `doorstep serve`
// processes on one PostgreSQL database (a private cluster started by
// internal/pgtest; TestMain calls pgtest.Main) and run
// deploy/haproxy/haproxy.cfg with Debian's haproxy in front of them. Both
// come from .ci/run; a missing one fails the tests, which skip only with
// DOORSTEP_SKIP_POSTGRES=1 or DOORSTEP_SKIP_HAPROXY=1.
package e2e
