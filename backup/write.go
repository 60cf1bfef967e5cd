package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Section is one part of a backup: the items of one read transaction, in
// key order (a Badger transaction, or any store's iterator through Each and
// EachIter), or a fixed list of items (files).
type Section struct {
	Name string
	// Txn is a read-only Badger transaction the caller opened (and
	// discards after Write returns): every item it sees is written, as of
	// its one read timestamp.
	Txn *badger.Txn
	// Items is used when Txn and Each are nil; it must be sorted by key.
	Items []Item
	// Each, if set (and Txn is nil), streams the section: it calls put
	// for every item in ascending key order and returns put's error. It
	// is for sections too big to hold in memory, such as attachment
	// files. put does not keep the Item.
	Each func(put func(*Item) error) error
}

// Iterator is an ordered read of a section's items: the part of
// store.Iterator a backup needs (backup does not import store). If it
// also has ExpiresAt() uint64 and UserMeta() byte (store/badger's does),
// those are written too; otherwise they are 0.
type Iterator interface {
	Rewind()
	Valid() bool
	Key() []byte
	Value() ([]byte, error)
	Next()
	Err() error
	Close()
}

// Progress is reported while a backup is written or loaded.
type Progress struct {
	Section string
	Items   int64
	Bytes   int64
	// Estimate is the caller's guess of the total bytes (0 if unknown).
	Estimate int64
	Elapsed  time.Duration
	Done     bool
}

// Rate is the bytes per second so far.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Bytes) / p.Elapsed.Seconds()
}

// ETA is the time left at the current rate, or 0 when unknown.
func (p Progress) ETA() time.Duration {
	r := p.Rate()
	if r <= 0 || p.Estimate <= p.Bytes {
		return 0
	}
	return time.Duration(float64(p.Estimate-p.Bytes) / r * float64(time.Second))
}

// WriteOptions tune Write.
type WriteOptions struct {
	// Progress, if set, is called about every Every and once at the end.
	Progress func(Progress)
	Every    time.Duration // default 500 ms
	Estimate int64         // total bytes expected, for ETA
	Now      func() time.Time
}

// Write writes a complete backup of secs to w: the header h (its Format
// and Sections are filled in), every section, then the trailer with
// counts and checksums. It stops early when ctx is done.
func Write(ctx context.Context, w io.Writer, h Header, secs []Section, o WriteOptions) (*Manifest, error) {
	if len(secs) == 0 || len(secs) > maxSections {
		return nil, fmt.Errorf("backup: %d sections", len(secs))
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	if o.Every <= 0 {
		o.Every = 500 * time.Millisecond
	}
	start := now()
	h.Format = FormatVersion
	h.Sections = nil
	for _, s := range secs {
		if len(s.Name) == 0 || len(s.Name) > maxName {
			return nil, fmt.Errorf("backup: section name %q", s.Name)
		}
		h.Sections = append(h.Sections, s.Name)
	}
	e := newEncoder(w)
	if err := e.header(&h); err != nil {
		return nil, err
	}
	var tr Trailer
	var items int64
	last := start
	report := func(sec string, done bool) {
		if o.Progress == nil {
			return
		}
		t := now()
		if !done && t.Sub(last) < o.Every {
			return
		}
		last = t
		o.Progress(Progress{Section: sec, Items: items, Bytes: e.n, Estimate: o.Estimate, Elapsed: t.Sub(start), Done: done})
	}
	for _, s := range secs {
		if err := e.write(append([]byte{tagSection, byte(len(s.Name))}, s.Name...)); err != nil {
			return nil, fmt.Errorf("backup: write: %w", err)
		}
		sum := SectionSum{Name: s.Name}
		sec := sha256.New()
		put := func(it *Item) error {
			e.buf = appendItem(append(e.buf[:0], tagItem), it)
			sec.Write(e.buf[1:])
			if err := e.write(e.buf); err != nil {
				return fmt.Errorf("backup: write: %w", err)
			}
			sum.Items++
			sum.Bytes += int64(len(e.buf) - 1)
			items++
			if items%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
				report(s.Name, false)
			}
			return nil
		}
		var err error
		switch {
		case s.Txn != nil:
			err = EachItem(s.Txn, put)
		case s.Each != nil:
			var prev []byte
			first := true
			err = s.Each(func(it *Item) error {
				if !first && bytes.Compare(prev, it.Key) >= 0 {
					return fmt.Errorf("keys out of order: %q after %q", it.Key, prev)
				}
				first = false
				prev = append(prev[:0], it.Key...)
				return put(it)
			})
		default:
			for i := range s.Items {
				if err = put(&s.Items[i]); err != nil {
					break
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("backup: section %s: %w", s.Name, err)
		}
		if err := e.write([]byte{tagEnd}); err != nil {
			return nil, fmt.Errorf("backup: write: %w", err)
		}
		sum.SHA256 = hex.EncodeToString(sec.Sum(nil))
		tr.Sections = append(tr.Sections, sum)
	}
	tr.FinishedAt = now().UTC()
	if err := e.trailer(&tr); err != nil {
		return nil, fmt.Errorf("backup: write: %w", err)
	}
	report("", true)
	return &Manifest{Header: h, Trailer: tr, Size: e.n, SHA256: hex.EncodeToString(e.sum)}, nil
}

// EachItem calls fn for every live item txn sees, in key order. The Item
// passed aliases buffers reused for the next item.
func EachItem(txn *badger.Txn, fn func(*Item) error) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256})
	defer it.Close()
	var v []byte
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		var err error
		if v, err = item.ValueCopy(v[:0]); err != nil {
			return fmt.Errorf("read %q: %w", item.Key(), err)
		}
		if err := fn(&Item{Key: item.Key(), Value: v, UserMeta: item.UserMeta(), ExpiresAt: item.ExpiresAt()}); err != nil {
			return err
		}
	}
	return nil
}

// EachIter calls fn for every item of it, in its order, and closes it.
// The Item passed is valid until fn returns.
func EachIter(it Iterator, fn func(*Item) error) error {
	defer it.Close()
	exp, _ := it.(interface{ ExpiresAt() uint64 })
	meta, _ := it.(interface{ UserMeta() byte })
	for it.Rewind(); it.Valid(); it.Next() {
		v, err := it.Value()
		if err != nil {
			return fmt.Errorf("read %q: %w", it.Key(), err)
		}
		item := Item{Key: it.Key(), Value: v}
		if exp != nil {
			item.ExpiresAt = exp.ExpiresAt()
		}
		if meta != nil {
			item.UserMeta = meta.UserMeta()
		}
		if err := fn(&item); err != nil {
			return err
		}
	}
	return it.Err()
}

// Digest returns the item count and SHA-256 (hex) of everything txn sees,
// in the encoding a section's checksum covers: after a restore it must
// equal the section's entry in the trailer.
func Digest(txn *badger.Txn) (items int64, sum string, err error) {
	h := sha256.New()
	var buf []byte
	err = EachItem(txn, func(it *Item) error {
		buf = appendItem(buf[:0], it)
		h.Write(buf)
		items++
		return nil
	})
	return items, hex.EncodeToString(h.Sum(nil)), err
}

// DigestEach is Digest over the items each streams (as Section.Each does):
// after a restore of a streamed section it must equal the section's entry
// in the trailer.
func DigestEach(each func(put func(*Item) error) error) (items int64, sum string, err error) {
	h := sha256.New()
	var buf []byte
	err = each(func(it *Item) error {
		buf = appendItem(buf[:0], it)
		h.Write(buf)
		items++
		return nil
	})
	return items, hex.EncodeToString(h.Sum(nil)), err
}

// WriteFile creates path atomically: fn writes the content to a temporary
// file in the same directory, which is fsynced, renamed to path and the
// directory fsynced. If fn or any step fails the temporary file is removed
// and path is untouched; if the process dies, only a temporary file
// (".path.tmp-*", without a trailer) can be left behind. An existing path
// is not overwritten.
func WriteFile(path string, fn func(w io.Writer) error) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("backup: %s already exists", path)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	tmp := filepath.Join(dir, "."+base+".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := fn(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("backup: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("backup: close %s: %w", tmp, err)
	}
	// Link, not rename, so an existing path created meanwhile is never
	// replaced.
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	ok = true
	os.Remove(tmp)
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("backup: fsync %s: %w", dir, err)
		}
	}
	return nil
}
