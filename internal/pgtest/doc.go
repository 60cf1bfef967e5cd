// Package pgtest starts private PostgreSQL clusters for tests: initdb in a
// temporary directory, the server listening only on a unix socket inside
// that directory (no TCP port, so clusters of parallel test binaries never
// collide and nothing outside the machine can reach them), a database per
// test, and pg_ctl stop plus removal of the directory at the end.
//
// The server (postgres -D) runs as a child of the test process with
// Pdeathsig set rather than daemonized by pg_ctl start: if the test binary
// dies (a -timeout panic, kill -9), the kernel kills the postmaster and its
// backends exit on noticing, so no cluster outlives its test run. Only the
// temporary directory is then left behind.
//
// # Usage
//
// One cluster serves a whole package's test run. The package's TestMain
// hands control to Main, which stops the cluster after the tests:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// A test then asks for a fresh, empty database of its own and gets a
// connection URL for pgx (or any libpq client):
//
//	url := pgtest.NewDB(t) // dropped again in t.Cleanup
//
// The cluster starts on the first NewDB (or Shared) call, so a package
// whose PostgreSQL tests are filtered out by -run starts nothing. A test
// that must crash and restart the server (durability) starts a cluster of
// its own with Start and calls Cluster.Restart.
//
// # Requirements and skipping
//
// The server binaries come from Debian's postgresql package (.ci/run
// installs it): pgtest looks in $DOORSTEP_PG_BIN, then the newest
// /usr/lib/postgresql/*/bin, then $PATH. initdb refuses to run as root, so
// when the test runs as root the server binaries run as the `postgres`
// system user (created by the Debian package), and the temporary directory
// is given to that user (under $TMPDIR, or /tmp when that user could not
// reach $TMPDIR or its path is too long for a unix socket).
//
// Missing PostgreSQL is a test failure that says how to install it. Tests
// skip only when asked explicitly: DOORSTEP_SKIP_POSTGRES=1.
//
// # Settings
//
// The cluster keeps PostgreSQL's durable defaults (fsync on,
// synchronous_commit on, full_page_writes on), so tests see real commit
// costs; only initdb runs with --no-sync, and shared_buffers is small so
// that a cluster starts in about a second. Authentication is trust over the
// private socket, which only root and the postgres user can reach (the
// directory is mode 0700).
//
// pgtest owns the clusters' lifecycle only. It knows no Doorstep schema and
// imports nothing of Doorstep's; store/postgres creates its own tables.
package pgtest
