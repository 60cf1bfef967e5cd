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
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/backup"
	"github.com/doorstep-health/doorstep/internal/restore"
	"github.com/doorstep-health/doorstep/server"
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
	items    int64 // counted by the caller as the file is parsed
	report   func(backup.Progress)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if now := time.Now(); now.Sub(p.last) >= p.every {
		p.last = now
		p.report(backup.Progress{Bytes: p.n, Items: p.items, Estimate: p.estimate, Elapsed: now.Sub(p.start)})
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
		m, err = backup.Read(io.TeeReader(pr, w), func(string, *backup.Item) error { pr.items++; return nil })
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

// restoreCmd is `doorstep restore` (see internal/restore): verify the
// file, load it into an empty data directory, verify the restored stores
// against the file's counts and checksums, then start a new epoch and
// re-apply the erasure journal.
func restoreCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("restore", stderr)
	in := fs.String("in", "", "backup file to restore")
	data := fs.String("data", "", "data directory to create; must not exist or be empty")
	keyFile := fs.String("encryption-key-file", "", "encrypt the restored stores with this key (hex; the key serve will use)")
	erasures := fs.String("erasures", "", "erasure journal (or a newer .dsbak) whose erasures to re-apply after the restore (see docs/OPERATIONS.md)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" || *data == "" {
		return errors.New("restore: --in FILE and --data DIR are required")
	}
	key, err := readKeyFile(orEnv(*keyFile, "DOORSTEP_ENCRYPTION_KEY_FILE", getenv))
	if err != nil {
		return err
	}
	pp := newProgress(stderr, "restore")
	res, err := restore.Run(ctx, restore.Options{In: *in, Data: *data, Key: key, Erasures: *erasures, Progress: pp.report, Log: stderr})
	if err != nil {
		return err
	}
	m := res.Manifest
	fmt.Fprintf(stdout, "restored %s into %s: %d items, log position %d, backup taken %s; new epoch %s\n",
		*in, *data, m.Items(), m.Header.LogPosition, m.Header.CreatedAt.Format(time.RFC3339), hex.EncodeToString(res.Epoch[:]))
	return nil
}
