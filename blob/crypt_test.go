package blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/doorstep-health/doorstep/internal/rawgrep"
)

var testKey = bytes.Repeat([]byte{7}, 32)

// With an encryption key no byte of a photo is on the disk in the clear,
// neither while its upload is unfinished nor once complete, while
// resuming, sniffing, the hash check, ranged reads and export all see the
// plaintext. A store opened without the key refuses to serve the file;
// files written before the key was configured stay readable.
func TestEncryptedAtRest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, Config{Dir: dir, EncryptionKey: testKey})
	data, sum := jpeg(t, 3*ExportChunk/2+77)
	marker := string(data[1000:1064])
	half := len(data) / 2
	if _, err := s.Write(ctx, "wigan", sum, ref, int64(len(data)), 0, &failAfter{r: bytes.NewReader(data), n: half}); err == nil {
		t.Fatal("cut write succeeded")
	}
	if st, err := s.Stat(ctx, "wigan", sum); err != nil || st.Offset != int64(half) || st.ContentType != "image/jpeg" {
		t.Fatalf("stat of the encrypted upload: %+v %v", st, err)
	}
	if files, _ := rawgrep.Files(dir, marker); len(files) != 0 {
		t.Fatalf("plaintext of an unfinished upload on disk: %v", files)
	}
	info, err := s.Write(ctx, "wigan", sum, ref, int64(len(data)), int64(half), bytes.NewReader(data[half:]))
	if err != nil || !info.Complete {
		t.Fatalf("resumed write: %+v %v", info, err)
	}
	if files, _ := rawgrep.Files(dir, marker); len(files) != 0 {
		t.Fatalf("plaintext of a complete blob on disk: %v", files)
	}
	f, _, err := s.Open(ctx, "wigan", sum)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	part := make([]byte, 100)
	if _, err := f.ReadAt(part, 123_457); err != nil || !bytes.Equal(got, data) || !bytes.Equal(part, data[123_457:123_557]) {
		t.Fatalf("plaintext read back: equal %v, range %v", bytes.Equal(got, data), err)
	}
	if _, err := f.Seek(-10, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	tail, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(tail, data[len(data)-10:]) {
		t.Fatal("seek from the end")
	}
	// Export is plaintext (a backup), Import re-encrypts with the target's key.
	items := export(t, s)
	d := open(t, Config{EncryptionKey: bytes.Repeat([]byte{9}, 16)})
	im := d.Import()
	for _, it := range items {
		if err := im.Put(it.k, it.v); err != nil {
			t.Fatal(err)
		}
	}
	if err := im.Finish(); err != nil {
		t.Fatal(err)
	}
	if files, _ := rawgrep.Files(d.cfg.Dir, marker); len(files) != 0 {
		t.Fatalf("plaintext on disk after import: %v", files)
	}
	again := export(t, d)
	if len(again) != len(items) || !bytes.Equal(again[0].v, items[0].v) || !bytes.Equal(again[len(again)-1].v, items[len(items)-1].v) {
		t.Fatal("re-export after import differs")
	}
	// Without the key: refused, never garbage.
	nk := open(t, Config{Dir: dir})
	if _, _, err := nk.Open(ctx, "wigan", sum); !errors.Is(err, ErrNoKey) {
		t.Fatalf("open without the key: %v, want ErrNoKey", err)
	}
	// A plaintext blob from before the key is still served with the key.
	plain := t.TempDir()
	ps := open(t, Config{Dir: plain})
	old, oldSum := jpeg(t, 5000)
	if _, err := ps.Write(ctx, "wigan", oldSum, ref, int64(len(old)), 0, bytes.NewReader(old)); err != nil {
		t.Fatal(err)
	}
	ks := open(t, Config{Dir: plain, EncryptionKey: testKey})
	f, _, err = ks.Open(ctx, "wigan", oldSum)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, old) {
		t.Fatal("legacy plaintext blob misread under a key")
	}
	if _, err := Open(Config{Dir: t.TempDir(), EncryptionKey: []byte("short")}); err == nil {
		t.Fatal("a 5-byte key accepted")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*", "uploads", "*")); len(m) != 0 {
		t.Fatalf("upload files left after completion: %v", m)
	}
}
