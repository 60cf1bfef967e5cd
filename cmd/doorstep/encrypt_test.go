package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/backup"
	"github.com/doorstep-health/doorstep/demo"
	"github.com/doorstep-health/doorstep/internal/rawgrep"
	"github.com/doorstep-health/doorstep/server"
	"github.com/vmihailenco/msgpack/v5"
)

// demoNames returns distinctive strings of the demo data: a person's
// family name as pushed, and a user's display name.
func demoNames(t *testing.T, now time.Time) []string {
	t.Helper()
	for _, p := range demo.Build(1, now).Pushes {
		for _, op := range p.Change.Ops {
			if op.Collection == "people" && op.Field == "family_name" {
				var s string
				if err := msgpack.Unmarshal(op.Value, &s); err == nil && len(s) >= 5 {
					return []string{s, "Okafor"}
				}
			}
		}
	}
	t.Fatal("no demo person")
	return nil
}

func writeKey(t *testing.T, b byte) (string, []byte) {
	t.Helper()
	key := bytes.Repeat([]byte{b}, 32)
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, key
}

func seededDemo(t *testing.T, data string, key []byte, now time.Time) *server.Server {
	t.Helper()
	srv, _ := seededServer(t, data, func(c *server.Config) { c.EncryptionKey = key })
	if _, err := seedDemo(context.Background(), srv, 1, now); err != nil {
		t.Fatal(err)
	}
	return srv
}

func grepDir(t *testing.T, dir, s string) []string {
	t.Helper()
	f, err := rawgrep.Files(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The raw data files of an encrypted server contain no demo name (and
// those of an unencrypted one do: the grep can fail). Keys rotate by
// backup and restore with a new key; the old key no longer opens the
// restored stores.
func TestEncryptionAtRestAndRotation(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	names := demoNames(t, now)

	plain := t.TempDir()
	srv := seededDemo(t, plain, nil, now)
	// While it runs, both stores' write-ahead logs hold the names in
	// plaintext (after a stop the auth store's tables are compressed, which
	// may split a name, so the check is made here).
	for _, s := range names {
		if len(grepDir(t, plain, s)) == 0 {
			t.Fatalf("%q not found in the unencrypted data: the grep proves nothing", s)
		}
	}
	srv.Shutdown(ctx)

	keyFile, key := writeKey(t, 0x11)
	enc := t.TempDir()
	srv = seededDemo(t, enc, key, now)
	// Grep while it runs (memtable WAL) and after a clean stop (tables).
	for _, s := range names {
		if f := grepDir(t, enc, s); len(f) > 0 {
			t.Fatalf("%q found in encrypted data files %v", s, f)
		}
	}
	// Rotation: an online backup, restored with a new key.
	bk := filepath.Join(t.TempDir(), "rot.dsbak")
	if err := backup.WriteFile(bk, func(w io.Writer) error { _, err := srv.WriteBackup(ctx, w, nil); return err }); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown(ctx)
	for _, s := range names {
		if f := grepDir(t, enc, s); len(f) > 0 {
			t.Fatalf("%q found in encrypted data files %v after shutdown", s, f)
		}
	}
	newKeyFile, newKey := writeKey(t, 0x22)
	rotated := filepath.Join(t.TempDir(), "rotated")
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"restore", "--in", bk, "--data", rotated, "--encryption-key-file", newKeyFile}, env(nil), nil, &out, &errb); err != nil {
		t.Fatalf("restore with new key: %v\n%s", err, errb.String())
	}
	for _, s := range names {
		if f := grepDir(t, rotated, s); len(f) > 0 {
			t.Fatalf("%q found in re-encrypted data files %v", s, f)
		}
	}
	if _, err := server.New(ctx, server.Config{DataDir: rotated, EncryptionKey: key, SmallMemory: true}); err == nil {
		t.Fatal("the old key opened the re-encrypted stores")
	}
	// The admin commands take the key too.
	out.Reset()
	if err := run(ctx, []string{"user", "list", "--data", rotated, "--encryption-key-file", newKeyFile}, env(nil), nil, &out, &errb); err != nil || !strings.Contains(out.String(), "amara") {
		t.Fatalf("user list with the key: %v\n%s", err, out.String())
	}
	if err := run(ctx, []string{"user", "list", "--data", rotated}, env(nil), nil, io.Discard, io.Discard); err == nil {
		t.Fatal("user list opened the encrypted auth store without the key")
	}
	srv2, _ := seededServer(t, rotated, func(c *server.Config) { c.EncryptionKey = newKey })
	if us, err := srv2.Auth().Users(ctx); err != nil || len(us) == 0 {
		t.Fatalf("users after rotation: %v %v", us, err)
	}
	_ = keyFile
}

// serve without --demo warns when the stores are not encrypted.
func TestServeWarnsUnencrypted(t *testing.T) {
	for _, withKey := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // serve starts, then shuts down at once
		args := []string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--log-format", "text"}
		if withKey {
			kf, _ := writeKey(t, 0x33)
			args = append(args, "--encryption-key-file", kf)
		}
		var errb bytes.Buffer
		_ = run(ctx, args, env(nil), nil, io.Discard, &errb)
		if warned := strings.Contains(errb.String(), "NOT encrypted"); warned == withKey {
			t.Fatalf("key %v: warned %v:\n%s", withKey, warned, errb.String())
		}
	}
}
