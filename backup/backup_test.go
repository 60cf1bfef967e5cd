package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

func openDB(t *testing.T, dir string) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(16 << 20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func fill(t *testing.T, db *badger.DB, n int) {
	t.Helper()
	err := db.Update(func(txn *badger.Txn) error {
		for i := range n {
			e := badger.NewEntry([]byte(fmt.Sprintf("k/%05d", i)), bytes.Repeat([]byte{byte(i)}, i%300+1)).WithMeta(byte(i % 3))
			if i%10 == 0 {
				e = e.WithTTL(time.Hour)
			}
			if err := txn.SetEntry(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// writeBackup backs db up (plus a files section) into a byte slice.
func writeBackup(t *testing.T, db *badger.DB) []byte {
	t.Helper()
	txn := db.NewTransaction(false)
	defer txn.Discard()
	var buf bytes.Buffer
	var reports int
	m, err := Write(context.Background(), &buf, Header{ServerID: "abc", LogPosition: 7, Layouts: map[string]uint32{"records": 1}},
		[]Section{{Name: "records", Txn: txn}, {Name: "keys", Items: []Item{{Key: []byte("a.pem"), Value: []byte("secret")}}}},
		WriteOptions{Progress: func(Progress) { reports++ }, Every: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if reports == 0 || m.Size != int64(buf.Len()) {
		t.Fatalf("reports %d, size %d vs %d", reports, m.Size, buf.Len())
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	db := openDB(t, t.TempDir())
	fill(t, db, 3000)
	file := writeBackup(t, db)

	m, err := Verify(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := m.Section("records"); s.Items != 3000 || m.Header.LogPosition != 7 || m.Header.ServerID != "abc" {
		t.Fatalf("manifest %+v", m)
	}
	dst := openDB(t, t.TempDir())
	kdir := filepath.Join(t.TempDir(), "keys")
	if _, err := Load(context.Background(), bytes.NewReader(file), map[string]Target{"records": mustStream(t, dst), "keys": DirTarget(kdir)}, LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	var n int64
	var sum string
	if err := dst.View(func(txn *badger.Txn) error { n, sum, err = Digest(txn); return err }); err != nil {
		t.Fatal(err)
	}
	if want, _ := m.Section("records"); n != want.Items || sum != want.SHA256 {
		t.Fatalf("restored digest %d %s, want %d %s", n, sum, want.Items, want.SHA256)
	}
	if b, err := os.ReadFile(filepath.Join(kdir, "a.pem")); err != nil || string(b) != "secret" {
		t.Fatalf("key file %q %v", b, err)
	}
	// TTLs survive.
	if err := dst.View(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte("k/00010"))
		if err != nil {
			return err
		}
		if it.ExpiresAt() == 0 || it.UserMeta() != 1 {
			return fmt.Errorf("expiry %d meta %d", it.ExpiresAt(), it.UserMeta())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Every single flipped byte and every truncation is refused.
func TestCorruptionRefused(t *testing.T) {
	db := openDB(t, t.TempDir())
	fill(t, db, 200)
	file := writeBackup(t, db)
	for i := 0; i < len(file); i += 1 + i/50 {
		bad := bytes.Clone(file)
		bad[i] ^= 0x01
		if _, err := Verify(bytes.NewReader(bad)); err == nil {
			t.Fatalf("flipped byte %d of %d accepted", i, len(file))
		}
	}
	for _, n := range []int{0, 10, len(file) / 2, len(file) - 41, len(file) - 1} {
		_, err := Verify(bytes.NewReader(file[:n]))
		if err == nil {
			t.Fatalf("truncated to %d accepted", n)
		}
		if n > 16 && !errors.Is(err, ErrIncomplete) {
			t.Errorf("truncated to %d: %v, want ErrIncomplete", n, err)
		}
	}
	newer := bytes.Clone(file)
	newer[11] = 9 // format version 9
	if _, err := Verify(bytes.NewReader(newer)); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("newer format: %v", err)
	}
	if _, err := Verify(bytes.NewReader([]byte("hello world, not a backup"))); !errors.Is(err, ErrNotBackup) {
		t.Fatalf("not a backup: %v", err)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "b.dsbak")
	boom := errors.New("boom")
	if err := WriteFile(p, func(w io.Writer) error { w.Write([]byte("half")); return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
}

func mustStream(t *testing.T, db *badger.DB) Target {
	t.Helper()
	tg, err := StreamTarget(db)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// A load that fails half way cancels the stream writer: the database
// still closes.
func TestStreamLoadCancelled(t *testing.T) {
	src := openDB(t, t.TempDir())
	fill(t, src, 3000)
	file := writeBackup(t, src)
	bad := bytes.Clone(file)
	bad[len(bad)-50] ^= 1
	dst := openDB(t, t.TempDir())
	if _, err := Load(context.Background(), bytes.NewReader(bad), map[string]Target{"records": mustStream(t, dst), "keys": DiscardTarget()}, LoadOptions{}); err == nil {
		t.Fatal("corrupt file loaded")
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// A streamed section (Each) is written, checksummed and loaded like any
// other; DigestEach over the same items equals its trailer entry; keys out
// of order fail the write.
func TestStreamedSection(t *testing.T) {
	items := []Item{{Key: []byte("a/d\x00"), Value: bytes.Repeat([]byte{1}, 5000)}, {Key: []byte("a/m"), Value: []byte("{}")}, {Key: []byte("b/m"), Value: []byte("{}")}}
	each := func(items []Item) func(func(*Item) error) error {
		return func(put func(*Item) error) error {
			for i := range items {
				if err := put(&items[i]); err != nil {
					return err
				}
			}
			return nil
		}
	}
	var buf bytes.Buffer
	m, err := Write(context.Background(), &buf, Header{}, []Section{{Name: "blobs", Each: each(items)}}, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if _, err := Load(context.Background(), bytes.NewReader(buf.Bytes()), map[string]Target{"blobs": &keyTarget{keys: &got}}, LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2] != "b/m" {
		t.Fatalf("loaded %q", got)
	}
	n, sum, err := DigestEach(each(items))
	if want, _ := m.Section("blobs"); err != nil || n != 3 || sum != want.SHA256 {
		t.Fatalf("DigestEach %d %s %v, trailer %+v", n, sum, err, want)
	}
	bad := []Item{items[1], items[0]}
	if _, err := Write(context.Background(), io.Discard, Header{}, []Section{{Name: "blobs", Each: each(bad)}}, WriteOptions{}); err == nil {
		t.Fatal("out-of-order stream written")
	}
}

type keyTarget struct{ keys *[]string }

func (k *keyTarget) Put(it *Item) error { *k.keys = append(*k.keys, string(it.Key)); return nil }
func (k *keyTarget) Finish() error      { return nil }
