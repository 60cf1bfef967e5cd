package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/backup"
	"github.com/doorstep-health/doorstep/blob"
	"github.com/doorstep-health/doorstep/store"
	storebadger "github.com/doorstep-health/doorstep/store/badger"
	dsync "github.com/doorstep-health/doorstep/sync"
)

// Options say what to restore where.
type Options struct {
	In   string // backup file
	Data string // data directory to create: absent or empty
	Key  []byte // encrypt the restored stores with this key (nil: plaintext)
	// Erasures is an erasure journal, or a newer backup file (*.dsbak),
	// whose erasures are re-applied after the load.
	Erasures string
	Progress func(backup.Progress) // nil: none
	Log      io.Writer             // verification lines and warnings; nil discards
}

// Result is what a restore did.
type Result struct {
	Manifest  *backup.Manifest
	Epoch     store.Epoch // the restored store's new epoch
	Reapplied int         // erasures re-applied that the backup predates
	// Verify, Load and Check time the three passes: reading the file once
	// to check it, loading it, and digesting the restored stores.
	Verify, Load, Check time.Duration
}

// Run restores o.In into o.Data: it verifies the whole file (refusing a
// non-empty target, a file that is not a backup, incomplete, corrupt, or of
// a newer format or layout) before creating anything, loads the stores and
// key files, verifies the restored stores' item counts and SHA-256 against
// the file's, starts a new epoch and re-applies erasures. On failure after
// the load started, it removes what it created.
func Run(ctx context.Context, o Options) (res Result, err error) {
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	progress := o.Progress
	if progress == nil {
		progress = func(backup.Progress) {}
	}
	if ents, err := os.ReadDir(o.Data); err == nil && len(ents) > 0 {
		return res, fmt.Errorf("restore: refusing to restore into %s: the directory is not empty (restore into a new directory, then swap it in)", o.Data)
	} else if err != nil && !os.IsNotExist(err) {
		return res, fmt.Errorf("restore: %w", err)
	}

	// 1. Verify the whole file before writing anything.
	t0 := time.Now()
	m, err := verifyFile(o.In, progress, logw)
	if err != nil {
		return res, err
	}
	res.Manifest, res.Verify = m, time.Since(t0)
	if v := m.Header.Layouts["records"]; v > store.CurrentVersion {
		return res, fmt.Errorf("restore: %s holds a records store of layout %d; this doorstep reads up to %d: use a newer doorstep", o.In, v, store.CurrentVersion)
	}
	if v := m.Header.Layouts["auth"]; v > auth.StoreLayout {
		return res, fmt.Errorf("restore: %s holds an auth store of layout %d; this doorstep reads up to %d: use a newer doorstep", o.In, v, auth.StoreLayout)
	}

	if v := m.Header.Layouts["blobs"]; v > blob.ExportVersion {
		return res, fmt.Errorf("restore: %s holds attachment files of layout %d; this doorstep reads up to %d: use a newer doorstep", o.In, v, blob.ExportVersion)
	}

	// 2. Load. On any failure, remove what was created.
	if err := os.MkdirAll(o.Data, 0o700); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	defer func() {
		if err != nil {
			cleanDir(o.Data)
		}
	}()
	recDir, authDir, keyDir := filepath.Join(o.Data, "records"), filepath.Join(o.Data, "auth"), filepath.Join(o.Data, "keys")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	recOpts := storebadger.Options{Dir: recDir, Logger: quiet, EncryptionKey: o.Key}
	t0 = time.Now()
	if err := loadFile(ctx, o.In, recOpts, authDir, keyDir, o.Key, progress); err != nil {
		return res, err
	}
	res.Load = time.Since(t0)

	// 3. Verify what is on disk now against the file's counts and checksums.
	t0 = time.Now()
	for _, sec := range []struct {
		name string
		opts badger.Options
	}{{"records", storebadger.BadgerOptions(recOpts, quiet)}, {"auth", storebadger.BadgerOptions(authBadger(authDir, o.Key), nil).WithLogger(nil)}} {
		want, _ := m.Section(sec.name)
		digest := digestDir
		if sec.name == "records" {
			digest = func(badger.Options) (int64, string, error) { return digestStore(ctx, recOpts) }
		}
		n, sum, err := digest(sec.opts)
		if err != nil {
			return res, fmt.Errorf("restore: verify %s: %w", sec.name, err)
		}
		if n != want.Items || sum != want.SHA256 {
			return res, fmt.Errorf("restore: verify %s failed: restored %d items sha256 %s, backup has %d items sha256 %s", sec.name, n, sum, want.Items, want.SHA256)
		}
		fmt.Fprintf(logw, "verified %s: %d items, sha256 %s\n", sec.name, n, sum)
	}
	if err := verifyBlobs(ctx, m, filepath.Join(o.Data, "blobs"), o.Key, logw); err != nil {
		return res, err
	}
	res.Check = time.Since(t0)

	// 4. New epoch (and layout migration, if the backup is older), then
	// re-apply erasures recorded after the backup.
	st, err := storebadger.Open(recOpts)
	if err != nil {
		return res, fmt.Errorf("restore: open restored records: %w", err)
	}
	if err = store.Migrate(ctx, st, quiet); err == nil {
		res.Epoch, err = store.NewEpoch(ctx, st)
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	if res.Reapplied, err = reapplyErasures(ctx, o.Data, o.In, o.Erasures, o.Key, logw); err != nil {
		return res, fmt.Errorf("restore: erasures: %w", err)
	}
	if res.Reapplied > 0 {
		fmt.Fprintf(logw, "re-applied %d erasures made after the backup\n", res.Reapplied)
	}
	return res, nil
}

func verifyFile(path string, progress func(backup.Progress), logw io.Writer) (*backup.Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	info, _ := f.Stat()
	pr := &progressReader{r: f, estimate: info.Size(), start: time.Now(), every: time.Second, report: progress}
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
	fmt.Fprintf(logw, "verified %s: %d bytes, %d items, sha256 %s\n", path, m.Size, m.Items(), m.SHA256)
	return m, nil
}

func loadFile(ctx context.Context, path string, recOpts storebadger.Options, authDir, keyDir string, key []byte, progress func(backup.Progress)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	rdb, err := badger.Open(storebadger.BadgerOptions(recOpts, recOpts.Logger).WithSyncWrites(false))
	if err != nil {
		return fmt.Errorf("restore: open %s: %w", recOpts.Dir, err)
	}
	adb, err := badger.Open(storebadger.BadgerOptions(authBadger(authDir, key), nil).WithLogger(nil).WithSyncWrites(false))
	if err != nil {
		rdb.Close()
		return fmt.Errorf("restore: open %s: %w", authDir, err)
	}
	// Both stores are empty and items arrive sorted: write tables directly.
	// Big record values are written in store/badger's chunk form (never in
	// Badger's value log, which an erasure re-applied after the restore
	// could not scrub).
	rt, err := backup.StreamTargetWith(rdb, chunkBig())
	if err != nil {
		rdb.Close()
		adb.Close()
		return fmt.Errorf("restore: %w", err)
	}
	at, err := backup.StreamTarget(adb)
	if err != nil {
		rdb.Close()
		adb.Close()
		return fmt.Errorf("restore: %w", err)
	}
	bs, err := blob.Open(blob.Config{Dir: filepath.Join(filepath.Dir(keyDir), "blobs"), SweepEvery: -1, EncryptionKey: key})
	if err != nil {
		rt.(interface{ Cancel() }).Cancel()
		at.(interface{ Cancel() }).Cancel()
		rdb.Close()
		adb.Close()
		return fmt.Errorf("restore: %w", err)
	}
	_, err = backup.Load(ctx, f, map[string]backup.Target{
		"records": rt, "auth": at, "keys": backup.DirTarget(keyDir),
		"erasures": backup.DiscardTarget(), // read and re-applied after the load
		"blobs":    blobTarget{bs.Import()},
	}, backup.LoadOptions{Progress: progress, Every: time.Second})
	bs.Close()
	// Load ends with db.Sync; Close flushes the memtables to tables.
	if cerr := errors.Join(rdb.Close(), adb.Close()); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore: load: %w", err)
	}
	return nil
}

// chunkBig stores each record value in store/badger's on-disk form: a
// big value as its head (stream 0, with every other item) and chunks
// (stream 1: the chunk range sorts before every store key, and the chunks
// of keys in order are in order).
func chunkBig() backup.Expand {
	var gen uint64
	return func(it *backup.Item, emit func(uint32, *backup.Item) error) error {
		gen++
		head, chunks := storebadger.EncodeValue(it.Key, it.Value, it.UserMeta, gen)
		for _, c := range chunks {
			if err := emit(1, &backup.Item{Key: c.Key, Value: c.Value, ExpiresAt: it.ExpiresAt}); err != nil {
				return err
			}
		}
		return emit(0, &backup.Item{Key: head.Key, Value: head.Value, UserMeta: head.UserMeta, ExpiresAt: it.ExpiresAt})
	}
}

// digestStore is Digest of the restored records read through the store
// (big values whole, as the backup was written).
func digestStore(ctx context.Context, opts storebadger.Options) (int64, string, error) {
	st, err := storebadger.Open(opts)
	if err != nil {
		return 0, "", err
	}
	defer st.Close()
	var n int64
	var sum string
	err = st.View(ctx, func(tx store.Tx) error {
		var err error
		n, sum, err = backup.DigestEach(func(put func(*backup.Item) error) error {
			return backup.EachIter(tx.Iterate(store.IterOptions{Batch: 256}), put)
		})
		return err
	})
	return n, sum, err
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
	for _, sub := range []string{"records", "auth", "keys", "blobs"} {
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
	if err := eraseBlobs(ctx, filepath.Join(data, "blobs"), key, es); err != nil {
		return 0, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	kv, err := storebadger.Open(storebadger.Options{Dir: filepath.Join(data, "records"), EncryptionKey: key, Logger: quiet, SmallMemory: true})
	if err != nil {
		return 0, err
	}
	eng, err := dsync.Open(ctx, dsync.Options{Store: kv, Logger: quiet})
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

// blobTarget loads the "blobs" section through the blob store, which
// checks each file's SHA-256 before keeping it.
type blobTarget struct{ im *blob.Importer }

func (t blobTarget) Put(it *backup.Item) error { return t.im.Put(it.Key, it.Value) }
func (t blobTarget) Finish() error             { return t.im.Finish() }
func (t blobTarget) Cancel()                   { t.im.Cancel() }

// verifyBlobs checks the restored attachment files against the backup's
// "blobs" section, by exporting them again. A backup without one predates
// blob sections: the files must be copied by hand.
func verifyBlobs(ctx context.Context, m *backup.Manifest, dir string, key []byte, logw io.Writer) error {
	want, ok := m.Section("blobs")
	if !ok {
		fmt.Fprintf(logw, "warning: this backup has no attachment files (it predates blob sections): copy DATA/blobs from a file-level copy taken with it (see docs/OPERATIONS.md)\n")
		return nil
	}
	bs, err := blob.Open(blob.Config{Dir: dir, SweepEvery: -1, EncryptionKey: key})
	if err != nil {
		return fmt.Errorf("restore: verify blobs: %w", err)
	}
	defer bs.Close()
	n, sum, err := backup.DigestEach(func(put func(*backup.Item) error) error {
		return bs.Export(ctx, func(k, v []byte) error { return put(&backup.Item{Key: k, Value: v}) })
	})
	if err != nil {
		return fmt.Errorf("restore: verify blobs: %w", err)
	}
	if n != want.Items || sum != want.SHA256 {
		return fmt.Errorf("restore: verify blobs failed: restored %d items sha256 %s, backup has %d items sha256 %s", n, sum, want.Items, want.SHA256)
	}
	fmt.Fprintf(logw, "verified blobs: %d items, sha256 %s\n", n, sum)
	return nil
}

// eraseBlobs deletes, in the restored blob directory, the attachments of
// the erased records that no other record refers to, as the server does
// on an erasure. It runs for every journalled erasure, including those the
// records store had already applied: a blob erased while the backup was
// being written may still be in it.
func eraseBlobs(ctx context.Context, dir string, key []byte, es []backup.Erasure) error {
	bs, err := blob.Open(blob.Config{Dir: dir, SweepEvery: -1, EncryptionKey: key})
	if err != nil {
		return err
	}
	defer bs.Close()
	byTeam := map[string][]blob.Ref{}
	for _, e := range es {
		byTeam[e.Team] = append(byTeam[e.Team], blob.Ref{Collection: e.Collection, ID: e.ID})
	}
	for team, refs := range byTeam {
		if _, err := bs.EraseRecords(ctx, team, refs); err != nil {
			return fmt.Errorf("re-apply erasures to the attachments of team %s: %w", team, err)
		}
	}
	return nil
}

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

// authBadger are the Badger options of the auth store in authDir, as the
// server opens it (server.OpenAuthBadger).
func authBadger(authDir string, key []byte) storebadger.Options {
	return storebadger.Options{Dir: authDir, SmallMemory: true, EncryptionKey: key}
}
