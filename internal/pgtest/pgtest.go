package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// SkipEnv is the environment variable that, set to 1, makes every test
// needing PostgreSQL skip instead of fail.
const SkipEnv = "DOORSTEP_SKIP_POSTGRES"

// BinEnv names a directory holding initdb, pg_ctl and postgres, tried
// before the Debian locations.
const BinEnv = "DOORSTEP_PG_BIN"

// installHint is what a test failure says when PostgreSQL is missing.
const installHint = "PostgreSQL server binaries not found: install Debian's package " +
	"(apt-get install postgresql, as .ci/run does) or point " + BinEnv +
	" at a directory holding initdb and pg_ctl; set " + SkipEnv +
	"=1 to skip the PostgreSQL tests instead"

// ErrNotInstalled: no PostgreSQL server binaries were found.
var ErrNotInstalled = errors.New("pgtest: " + installHint)

// Cluster is a running private PostgreSQL cluster.
type Cluster struct {
	dir    string // root of the temp dir (socket directory)
	data   string // data directory
	bin    string // directory of initdb, pg_ctl
	cred   *syscall.Credential
	port   int
	server *exec.Cmd  // the running postmaster
	exited chan error // its Wait result
	dbSeq  atomic.Int64
	mu     sync.Mutex
	closed bool
}

// FindBin returns the directory of the PostgreSQL server binaries, or
// ErrNotInstalled.
func FindBin() (string, error) {
	has := func(d string) bool {
		for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(d, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv(BinEnv); d != "" {
		if has(d) {
			return d, nil
		}
		return "", fmt.Errorf("pgtest: %s=%s holds no initdb, pg_ctl and postgres: %w", BinEnv, d, ErrNotInstalled)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && has(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if has(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	return "", ErrNotInstalled
}

// pgVersion is the major version in a /usr/lib/postgresql/N/bin path.
func pgVersion(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// serverCredential is who runs the server binaries: nil (this process's
// user) unless we are root, then the postgres system user.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root, and initdb refuses root: need the postgres system user (created by Debian's postgresql package): %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgtest: postgres user has non-numeric ids %q/%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// tempBase is where cluster directories go: os.TempDir(), unless the
// server's user could not reach it (every ancestor needs search
// permission for others when the server runs as postgres) or it is so long
// that the socket path would pass the 107-byte limit of unix sockets; then
// /tmp.
func tempBase(cred *syscall.Credential) string {
	base := os.TempDir()
	if len(base) > 60 {
		return "/tmp"
	}
	if cred == nil {
		return base
	}
	for d := base; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return base
		}
	}
}

// Start creates and starts a new private cluster. The caller must Stop it.
func Start() (*Cluster, error) {
	bin, err := FindBin()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tempBase(cred), "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: temp dir: %w", err)
	}
	c := &Cluster{dir: dir, data: filepath.Join(dir, "data"), bin: bin, cred: cred, port: 5432}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: chown %s to postgres: %w", dir, err)
		}
	}
	if err := c.run("initdb", "-D", c.data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	conf := fmt.Sprintf(`
# pgtest: private socket only, small memory, durable defaults kept.
listen_addresses = ''
unix_socket_directories = '%s'
port = %d
shared_buffers = 16MB
wal_buffers = 8MB
max_connections = 200
fsync = on
synchronous_commit = on
log_min_messages = warning
`, dir, c.port)
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(conf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: write postgresql.conf: %w", err)
	}
	if err := c.start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// start runs the postmaster as a child of this process, which it does not
// outlive: it gets SIGKILL if this process dies (Pdeathsig), so a test
// binary killed by a timeout leaves no server running. It waits until the
// server accepts connections.
func (c *Cluster) start() error {
	logf, err := os.OpenFile(filepath.Join(c.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("pgtest: server log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), "-D", c.data)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
			return fmt.Errorf("pgtest: postgres exited at start: %v\n%s", err, tail(string(b), 2000))
		default:
		}
		if c.run("pg_isready", "-q", "-h", c.dir, "-p", strconv.Itoa(c.port), "-U", "postgres", "-d", "postgres") == nil {
			c.server, c.exited = cmd, exited
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return errors.New("pgtest: postgres did not accept connections within 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop shuts the server down with pg_ctl stop: mode "fast" checkpoints
// and exits, "immediate" exits at once (WAL replay at the next start, as
// after a crash).
func (c *Cluster) stop(mode string) error {
	if c.server == nil {
		return nil
	}
	cmd, exited := c.server, c.exited
	c.server, c.exited = nil, nil
	err := c.run("pg_ctl", "-D", c.data, "-m", mode, "-w", "-t", "60", "stop")
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		if err == nil {
			err = errors.New("pgtest: postgres outlived pg_ctl stop; killed")
		}
	}
	return err
}

// run runs one of the server binaries as the server's user.
func (c *Cluster) run(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		log := ""
		if b, rerr := os.ReadFile(filepath.Join(c.dir, "server.log")); rerr == nil && len(b) > 0 {
			log = "\nserver.log:\n" + tail(string(b), 2000)
		}
		return fmt.Errorf("pgtest: %s %s: %w\n%s%s", name, strings.Join(args, " "), err, out.String(), log)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// SocketDir is the directory holding the cluster's unix socket (libpq's
// host for a socket connection).
func (c *Cluster) SocketDir() string { return c.dir }

// URL is a connection URL for database db as the superuser postgres.
func (c *Cluster) URL(db string) string {
	q := url.Values{}
	q.Set("host", c.dir)
	q.Set("port", strconv.Itoa(c.port))
	q.Set("sslmode", "disable")
	return "postgres://postgres@/" + url.PathEscape(db) + "?" + q.Encode()
}

// psql runs one SQL statement against the maintenance database.
func (c *Cluster) psql(sql string) error {
	return c.run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", c.dir, "-p", strconv.Itoa(c.port),
		"-U", "postgres", "-d", "postgres", "-c", sql)
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// CreateDB creates an empty database named after hint (made unique) and
// returns its name.
func (c *Cluster) CreateDB(hint string) (string, error) {
	name := unsafeName.ReplaceAllString(strings.ToLower(hint), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("t%d_%s", c.dbSeq.Add(1), name)
	if err := c.psql(`CREATE DATABASE "` + name + `"`); err != nil {
		return "", err
	}
	return name, nil
}

// DropDB drops a database, closing any connection still open to it.
func (c *Cluster) DropDB(name string) error {
	return c.psql(`DROP DATABASE IF EXISTS "` + name + `" WITH (FORCE)`)
}

// Restart stops the server and starts it again. With immediate set the
// stop is PostgreSQL's immediate mode: every server process quits at once
// without a checkpoint, as in a crash, and the start replays the
// write-ahead log.
func (c *Cluster) Restart(immediate bool) error {
	mode := "fast"
	if immediate {
		mode = "immediate"
	}
	if err := c.stop(mode); err != nil {
		return err
	}
	return c.start()
}

// Stop stops the server and removes its directory. Calling it again is a
// no-op.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	err := c.stop("fast")
	if rerr := os.RemoveAll(c.dir); err == nil {
		err = rerr
	}
	return err
}

// The package's shared cluster, started on first use and stopped by Main.
var (
	sharedMu      sync.Mutex
	sharedCluster *Cluster
	sharedErr     error
	mainRunning   atomic.Bool
)

// Main runs a package's tests (m.Run) and then stops the shared cluster if
// one was started. Call it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	mainRunning.Store(true)
	code := m.Run()
	sharedMu.Lock()
	c := sharedCluster
	sharedCluster = nil
	sharedMu.Unlock()
	if c != nil {
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Skipped reports whether PostgreSQL tests were asked to skip (SkipEnv=1).
func Skipped() bool { return os.Getenv(SkipEnv) == "1" }

// Shared returns the package's shared cluster, starting it on first use.
// It skips t when SkipEnv is set and fails t when PostgreSQL is missing or
// the package's TestMain does not call Main (which stops the cluster).
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if Skipped() {
		t.Skipf("PostgreSQL tests skipped: %s=1", SkipEnv)
	}
	if !mainRunning.Load() {
		t.Fatal("pgtest: the package's TestMain must call pgtest.Main(m) so that the shared cluster is stopped")
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedCluster == nil && sharedErr == nil {
		sharedCluster, sharedErr = Start()
	}
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedCluster
}

// NewDB creates an empty database on the shared cluster for t, dropped
// in t.Cleanup, and returns its connection URL.
func NewDB(t testing.TB) string {
	t.Helper()
	c := Shared(t)
	name, err := c.CreateDB(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.DropDB(name); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return c.URL(name)
}

// Own starts a cluster for t alone (one a test may restart or crash),
// stopped in t.Cleanup. It skips and fails as Shared does.
func Own(t testing.TB) *Cluster {
	t.Helper()
	if Skipped() {
		t.Skipf("PostgreSQL tests skipped: %s=1", SkipEnv)
	}
	c, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("pgtest: stop: %v", err)
		}
	})
	return c
}
