package backup

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/ristretto/v2/z"
)

// Target receives the items of one section during Load.
type Target interface {
	// Put stores one item; it must copy what it keeps.
	Put(it *Item) error
	// Finish makes everything Put durable.
	Finish() error
}

// DBTarget loads a section into an empty Badger database through a write
// batch, keeping each item's user meta and expiry.
func DBTarget(db *badger.DB) Target { return &dbTarget{wb: db.NewWriteBatch(), db: db} }

type dbTarget struct {
	db *badger.DB
	wb *badger.WriteBatch
}

func (t *dbTarget) Put(it *Item) error {
	e := badger.NewEntry(append([]byte(nil), it.Key...), append([]byte(nil), it.Value...)).WithMeta(it.UserMeta)
	e.ExpiresAt = it.ExpiresAt
	return t.wb.SetEntry(e)
}

func (t *dbTarget) Finish() error {
	if err := t.wb.Flush(); err != nil {
		return err
	}
	return t.db.Sync()
}

// StreamTarget loads a section into an empty Badger database with
// Badger's StreamWriter, which writes sorted tables directly instead of
// going through memtables and compactions: items arrive in ascending key
// order (the format guarantees it), which is what StreamWriter needs.
// Every item is written at version 1, with its user meta and expiry.
func StreamTarget(db *badger.DB) (Target, error) { return StreamTargetWith(db, nil) }

// Expand rewrites one loaded item as the entries the database stores it
// in: each emitted item goes to StreamWriter stream stream, in which items
// must arrive in ascending key order, and streams must not overlap in key
// range (store/badger's big values: the head in stream 0 with the other
// items, its chunks in stream 1, a key range of their own).
type Expand func(it *Item, emit func(stream uint32, it *Item) error) error

// StreamTargetWith is StreamTarget with each item rewritten by expand
// (nil: stored as it is).
func StreamTargetWith(db *badger.DB, expand Expand) (Target, error) {
	sw := db.NewStreamWriter()
	if err := sw.Prepare(); err != nil {
		return nil, err
	}
	return &streamTarget{sw: sw, buf: z.NewBuffer(8<<20, "backup.StreamTarget"), expand: expand}, nil
}

type streamTarget struct {
	sw     *badger.StreamWriter
	buf    *z.Buffer
	expand Expand
}

func (t *streamTarget) Put(it *Item) error {
	if t.expand != nil {
		return t.expand(it, t.put)
	}
	return t.put(0, it)
}

func (t *streamTarget) put(stream uint32, it *Item) error {
	badger.KVToBuffer(&pb.KV{Key: it.Key, Value: it.Value, UserMeta: []byte{it.UserMeta}, ExpiresAt: it.ExpiresAt, Version: 1, StreamId: stream}, t.buf)
	if t.buf.LenNoPadding() < 4<<20 {
		return nil
	}
	return t.flushBuf()
}

func (t *streamTarget) flushBuf() error {
	if t.buf.LenNoPadding() == 0 {
		return nil
	}
	err := t.sw.Write(t.buf)
	t.buf.Reset()
	return err
}

// Cancel abandons the load (Load calls it when the file fails).
func (t *streamTarget) Cancel() {
	t.sw.Cancel()
	t.buf.Release()
}

func (t *streamTarget) Finish() error {
	defer t.buf.Release()
	if err := t.flushBuf(); err != nil {
		t.sw.Cancel()
		return err
	}
	return t.sw.Flush()
}

// DirTarget loads a section of files (key = file name, value = content)
// into dir, each written with mode 0600 and fsynced. File names must be
// plain names (no separators, no dot files).
func DirTarget(dir string) Target { return &dirTarget{dir: dir} }

type dirTarget struct{ dir string }

func (t *dirTarget) Put(it *Item) error {
	name := string(it.Key)
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("%w: file name %q", ErrCorrupt, name)
	}
	if err := os.MkdirAll(t.dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(t.dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(it.Value); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (t *dirTarget) Finish() error {
	d, err := os.Open(t.dir)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// FileItems returns the regular files directly in dir whose names end in
// suffix, as items sorted by name, for a files section.
func FileItems(dir, suffix string) ([]Item, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var out []Item
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), suffix) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		out = append(out, Item{Key: []byte(e.Name()), Value: b})
	}
	return out, nil
}

// LoadOptions tune Load.
type LoadOptions struct {
	Progress func(Progress)
	Every    time.Duration // default 500 ms
	Now      func() time.Time
}

// Load reads a backup from r into targets (one per section name; every
// section of the file must have one) and returns its manifest. Call it on
// a file Verify has accepted: Load checks the checksums again, but only
// after the items are written, so a corrupt file leaves the targets
// partly filled.
func Load(ctx context.Context, r io.Reader, targets map[string]Target, o LoadOptions) (*Manifest, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	if o.Every <= 0 {
		o.Every = 500 * time.Millisecond
	}
	start := now()
	last := start
	cr := &countReader{r: r}
	var items int64
	m, err := Read(cr, func(section string, it *Item) error {
		t, ok := targets[section]
		if !ok {
			return fmt.Errorf("backup: no target for section %q", section)
		}
		if err := t.Put(it); err != nil {
			return fmt.Errorf("backup: load %s: %w", section, err)
		}
		items++
		if items%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if t := now(); o.Progress != nil && t.Sub(last) >= o.Every {
				last = t
				o.Progress(Progress{Section: section, Items: items, Bytes: cr.n, Elapsed: t.Sub(start)})
			}
		}
		return nil
	})
	if err != nil {
		for _, t := range targets {
			if c, ok := t.(interface{ Cancel() }); ok {
				c.Cancel()
			}
		}
		return nil, err
	}
	for name, t := range targets {
		if err := t.Finish(); err != nil {
			return nil, fmt.Errorf("backup: finish %s: %w", name, err)
		}
	}
	if o.Progress != nil {
		o.Progress(Progress{Items: items, Bytes: cr.n, Elapsed: now().Sub(start), Done: true})
	}
	return m, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func sortItems(items []Item) {
	slices.SortFunc(items, func(a, b Item) int { return bytes.Compare(a.Key, b.Key) })
}

// DiscardTarget accepts a section's items and keeps none (a section the
// restore reads separately, such as "erasures").
func DiscardTarget() Target { return discard{} }

type discard struct{}

func (discard) Put(*Item) error { return nil }
func (discard) Finish() error   { return nil }
