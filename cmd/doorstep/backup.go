package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/mattn/go-isatty"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/backup"
	"github.com/doorstep-health/doorstep/server"
	"github.com/doorstep-health/doorstep/store"
	dsync "github.com/doorstep-health/doorstep/sync"
)

// readKeyFile reads an encryption key file: 32, 48 or 64 hex digits
// (AES-128/192/256, e.g. from `openssl rand -hex 32`), surrounding white
// space ignored.
func readKeyFile(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--encryption-key-file: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || (len(key) != 16 && len(key) != 24 && len(key) != 32) {
		return nil, fmt.Errorf("--encryption-key-file %s: want 32, 48 or 64 hex digits (e.g. openssl rand -hex 32)", path)
	}
	return key, nil
}

// progressPrinter renders backup progress on a terminal as one rewritten
// line, or as log lines when w is not a terminal.
type progressPrinter struct {
	w      io.Writer
	tty    bool
	log    *slog.Logger
	prefix string
}

func newProgress(w io.Writer, prefix string) *progressPrinter {
	p := &progressPrinter{w: w, prefix: prefix, log: slog.New(slog.NewTextHandler(w, nil))}
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		p.tty = true
	}
	return p
}

func (p *progressPrinter) report(pr backup.Progress) {
	eta := "?"
	if d := pr.ETA(); d > 0 {
		eta = d.Round(time.Second).String()
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%s %s  %d items  %s/s  ETA %s   ", p.prefix, mib(pr.Bytes), pr.Items, mib(int64(pr.Rate())), eta)
		if pr.Done {
			fmt.Fprintln(p.w)
		}
		return
	}
	p.log.Info(p.prefix, "bytes", pr.Bytes, "items", pr.Items, "rate_bytes_per_s", int64(pr.Rate()), "eta", eta, "done", pr.Done)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// progressReader reports bytes read through it.
type progressReader struct {
	r        io.Reader
	n        int64
	estimate int64
	start    time.Time
	last     time.Time
	every    time.Duration
	report   func(backup.Progress)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if now := time.Now(); now.Sub(p.last) >= p.every {
		p.last = now
		p.report(backup.Progress{Bytes: p.n, Estimate: p.estimate, Elapsed: now.Sub(p.start)})
	}
	return n, err
}

// backupCmd is `doorstep backup`: it logs in as a service admin, streams
// GET /v1/admin/backup into --out (atomically: temp file, fsync, rename)
// and verifies the file before reporting success.
func backupCmd(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("backup", stderr)
	out := fs.String("out", "", "backup file to create (must not exist)")
	srvURL := fs.String("server", "", "server base URL (env DOORSTEP_SERVER; default http://127.0.0.1:8080)")
	username := fs.String("username", "", "admin username (env DOORSTEP_USERNAME); password from DOORSTEP_PASSWORD or stdin")
	token := fs.String("token", "", "an admin access token instead of a login (env DOORSTEP_TOKEN)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("backup: --out FILE is required")
	}
	base := strings.TrimRight(orEnv(*srvURL, "DOORSTEP_SERVER", getenv), "/")
	if base == "" {
		base = "http://127.0.0.1:8080"
	}
	tok := orEnv(*token, "DOORSTEP_TOKEN", getenv)
	if tok == "" {
		var err error
		if tok, err = login(ctx, base, orEnv(*username, "DOORSTEP_USERNAME", getenv), getenv, stdin); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/admin/backup", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("backup: server answered %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	est, _ := strconv.ParseInt(resp.Header.Get(server.BackupEstimateHeader), 10, 64)
	pp := newProgress(stderr, "backup")
	pr := &progressReader{r: resp.Body, estimate: est, start: time.Now(), every: time.Second, report: pp.report}
	var m *backup.Manifest
	err = backup.WriteFile(*out, func(w io.Writer) error {
		// The file is checked as it is written: what lands under --out has
		// a whole-file checksum that matched.
		var err error
		m, err = backup.Verify(io.TeeReader(pr, w))
		return err
	})
	if err != nil {
		return fmt.Errorf("backup: %w (nothing was written to %s)", err, *out)
	}
	pp.report(backup.Progress{Bytes: m.Size, Items: m.Items(), Elapsed: time.Since(pr.start), Done: true})
	fmt.Fprintf(stdout, "backup %s: %d bytes, %d items, log position %d, epoch %s, sha256 %s\n",
		*out, m.Size, m.Items(), m.Header.LogPosition, m.Header.Epoch, m.SHA256)
	return nil
}

// login gets an access token for username with a fresh device ID.
func login(ctx context.Context, base, username string, getenv func(string) string, stdin io.Reader) (string, error) {
	if username == "" {
		return "", errors.New("--username (or --token) is required")
	}
	pw, err := readPassword(getenv, stdin)
	if err != nil {
		return "", err
	}
	var dev [16]byte
	if _, err := rand.Read(dev[:]); err != nil {
		return "", err
	}
	body, _ := json.Marshal(api.LoginRequest{Username: username, Password: pw, DeviceID: hex.EncodeToString(dev[:]), DeviceName: "doorstep backup"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/auth/login", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("login: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var tr api.TokenResponse
	if err := json.Unmarshal(b, &tr); err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	return tr.AccessToken, nil
}

// restoreCmd is `doorstep restore`: verify the file, load it into an empty
// data directory, verify the restored stores against the file's counts and
// checksums, then start a new epoch and re-apply the erasure journal.
func restoreCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	fs := newFlags("restore", stderr)
	in := fs.String("in", "", "backup file to restore")
	data := fs.String("data", "", "data directory to create; must not exist or be empty")
	keyFile := fs.String("encryption-key-file", "", "encrypt the restored stores with this key (hex; the key serve will use)")
	erasures := fs.String("erasures", "", "erasure journal to re-apply after the restore (default: the one inside the backup; see docs/OPERATIONS.md)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" || *data == "" {
		return errors.New("restore: --in FILE and --data DIR are required")
	}
	key, err := readKeyFile(*keyFile)
	if err != nil {
		return err
	}
	if ents, err := os.ReadDir(*data); err == nil && len(ents) > 0 {
		return fmt.Errorf("restore: refusing to restore into %s: the directory is not empty (restore into a new directory, then swap it in)", *data)
	} else if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("restore: %w", err)
	}
	pp := newProgress(stderr, "restore")

	// 1. Verify the whole file before writing anything.
	m, err := verifyFile(*in, pp)
	if err != nil {
		return err
	}
	if v := m.Header.Layouts["records"]; v > store.CurrentVersion {
		return fmt.Errorf("restore: %s holds a records store of layout %d; this doorstep reads up to %d: use a newer doorstep", *in, v, store.CurrentVersion)
	}
	if v := m.Header.Layouts["auth"]; v > auth.StoreLayout {
		return fmt.Errorf("restore: %s holds an auth store of layout %d; this doorstep reads up to %d: use a newer doorstep", *in, v, auth.StoreLayout)
	}

	// 2. Load. On any failure, remove what was created.
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer func() {
		if err != nil {
			cleanDir(*data)
		}
	}()
	recDir, authDir, keyDir := filepath.Join(*data, "records"), filepath.Join(*data, "auth"), filepath.Join(*data, "keys")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	recOpts := store.Options{Dir: recDir, Logger: quiet, EncryptionKey: key}
	if err := loadFile(ctx, *in, recOpts, authDir, keyDir, key, pp); err != nil {
		return err
	}

	// 3. Verify what is on disk now against the file's counts and checksums.
	for _, sec := range []struct {
		name string
		opts badger.Options
	}{{"records", store.BadgerOptions(recOpts, quiet)}, {"auth", auth.BadgerOptions(authDir, key).WithLogger(nil)}} {
		want, _ := m.Section(sec.name)
		n, sum, err := digestDir(sec.opts)
		if err != nil {
			return fmt.Errorf("restore: verify %s: %w", sec.name, err)
		}
		if n != want.Items || sum != want.SHA256 {
			return fmt.Errorf("restore: verify %s failed: restored %d items sha256 %s, backup has %d items sha256 %s", sec.name, n, sum, want.Items, want.SHA256)
		}
		fmt.Fprintf(stderr, "verified %s: %d items, sha256 %s\n", sec.name, n, sum)
	}

	// 4. New epoch (and layout migration, if the backup is older), then
	// re-apply erasures recorded after the backup.
	st, err := store.Open(ctx, recOpts)
	if err != nil {
		return fmt.Errorf("restore: open restored records: %w", err)
	}
	epoch, err := st.NewEpoch(ctx)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	n, err := reapplyErasures(ctx, *data, *in, *erasures, key, stderr)
	if err != nil {
		return fmt.Errorf("restore: erasures: %w", err)
	}
	if n > 0 {
		fmt.Fprintf(stderr, "re-applied %d erasures made after the backup\n", n)
	}
	fmt.Fprintf(stdout, "restored %s into %s: %d items, log position %d, backup taken %s; new epoch %s\n",
		*in, *data, m.Items(), m.Header.LogPosition, m.Header.CreatedAt.Format(time.RFC3339), hex.EncodeToString(epoch[:]))
	return nil
}

func verifyFile(path string, pp *progressPrinter) (*backup.Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	info, _ := f.Stat()
	pr := &progressReader{r: f, estimate: info.Size(), start: time.Now(), every: time.Second, report: pp.report}
	m, err := backup.Verify(pr)
	switch {
	case errors.Is(err, backup.ErrNotBackup):
		return nil, fmt.Errorf("restore: %s is not a Doorstep backup file", path)
	case errors.Is(err, backup.ErrNewerFormat):
		return nil, fmt.Errorf("restore: %s: %w; use a newer doorstep", path, err)
	case errors.Is(err, backup.ErrIncomplete):
		return nil, fmt.Errorf("restore: %s is incomplete (an interrupted backup or a truncated copy): %w", path, err)
	case errors.Is(err, backup.ErrCorrupt):
		return nil, fmt.Errorf("restore: %s is corrupt, refusing it: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("restore: %w", err)
	}
	fmt.Fprintf(pp.w, "verified %s: %d bytes, %d items, sha256 %s\n", path, m.Size, m.Items(), m.SHA256)
	return m, nil
}

func loadFile(ctx context.Context, path string, recOpts store.Options, authDir, keyDir string, key []byte, pp *progressPrinter) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	rdb, err := badger.Open(store.BadgerOptions(recOpts, recOpts.Logger).WithSyncWrites(false))
	if err != nil {
		return fmt.Errorf("restore: open %s: %w", recOpts.Dir, err)
	}
	adb, err := badger.Open(auth.BadgerOptions(authDir, key).WithSyncWrites(false))
	if err != nil {
		rdb.Close()
		return fmt.Errorf("restore: open %s: %w", authDir, err)
	}
	_, err = backup.Load(ctx, f, map[string]backup.Target{
		"records": backup.DBTarget(rdb), "auth": backup.DBTarget(adb), "keys": backup.DirTarget(keyDir),
		"erasures": backup.DiscardTarget(), // read and re-applied after the load
	}, backup.LoadOptions{Progress: pp.report, Every: time.Second})
	// Load ends with db.Sync; Close flushes the memtables to tables.
	if cerr := errors.Join(rdb.Close(), adb.Close()); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore: load: %w", err)
	}
	return nil
}

func digestDir(opts badger.Options) (int64, string, error) {
	db, err := badger.Open(opts.WithReadOnly(false))
	if err != nil {
		return 0, "", err
	}
	defer db.Close()
	var n int64
	var sum string
	err = db.View(func(txn *badger.Txn) error {
		var err error
		n, sum, err = backup.Digest(txn)
		return err
	})
	return n, sum, err
}

// cleanDir removes what a failed restore created inside dir (which was
// empty or absent before).
func cleanDir(dir string) {
	for _, sub := range []string{"records", "auth", "keys"} {
		os.RemoveAll(filepath.Join(dir, sub))
	}
	os.Remove(dir)
}

// reapplyErasures erases, in the restored store, every record the
// journals name that it still holds: the backup's own "erasures" section
// (already applied, so normally a no-op) and the journal or newer backup
// given with --erasures. The union is written to the new data
// directory's journal so later restores keep it.
func reapplyErasures(ctx context.Context, data, in, extra string, key []byte, stderr io.Writer) (int, error) {
	f, err := os.Open(in)
	if err != nil {
		return 0, err
	}
	es, err := backup.ErasuresOf(f)
	f.Close()
	if err != nil {
		return 0, err
	}
	if extra != "" {
		var more []backup.Erasure
		if strings.HasSuffix(extra, ".dsbak") {
			g, err := os.Open(extra)
			if err != nil {
				return 0, err
			}
			more, err = backup.ErasuresOf(g)
			g.Close()
			if err != nil {
				return 0, fmt.Errorf("--erasures %s: %w", extra, err)
			}
		} else if more, err = backup.ReadErasures(extra); err != nil {
			return 0, err
		}
		es = append(es, more...)
	} else {
		fmt.Fprintln(stderr, "warning: no --erasures journal given: erasures made after this backup was taken are not re-applied (see docs/OPERATIONS.md)")
	}
	if len(es) == 0 {
		return 0, nil
	}
	eng, err := dsync.Open(ctx, dsync.Options{Dir: filepath.Join(data, "records"), EncryptionKey: key,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), SmallMemory: true})
	if err != nil {
		return 0, err
	}
	n := 0
	seen := map[string]bool{}
	var kept []backup.Erasure
	for _, e := range es {
		if seen[e.Key()] {
			continue
		}
		seen[e.Key()] = true
		kept = append(kept, e)
		rep, err := eng.Erase(ctx, dsync.Caller{User: "restore", Teams: []string{e.Team}}, api.RecordRef{Team: e.Team, Collection: e.Collection, ID: e.ID}, false)
		switch {
		case errors.Is(err, dsync.ErrNotFound):
		case err != nil:
			eng.Close()
			return n, fmt.Errorf("re-apply erasure of %s/%s/%s: %w", e.Team, e.Collection, e.ID, err)
		case !rep.AlreadyErased:
			n++
		}
	}
	if err := eng.Close(); err != nil {
		return n, err
	}
	return n, backup.AppendErasures(filepath.Join(data, "erasures.jsonl"), kept)
}
