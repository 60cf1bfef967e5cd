package blob

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func jpeg(t *testing.T, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	copy(b, []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F', 0})
	s := sha256.Sum256(b)
	return b, hex.EncodeToString(s[:])
}

// failAfter returns n bytes of r and then an error, as a cut connection.
type failAfter struct {
	r io.Reader
	n int
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func open(t *testing.T, cfg Config) *Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var ref = Ref{Collection: "contacts", ID: "c1"}

// An upload cut twice keeps what arrived, resumes from the held offset,
// and completes; a wrong offset is told the right one.
func TestWriteResumes(t *testing.T) {
	ctx := context.Background()
	s := open(t, Config{})
	data, sum := jpeg(t, 300_000)
	info, err := s.Write(ctx, "wigan", sum, ref, int64(len(data)), 0, &failAfter{r: bytes.NewReader(data), n: 100_000})
	if err == nil || info.Offset != 100_000 || info.Complete {
		t.Fatalf("cut write: %+v, %v", info, err)
	}
	if st, _ := s.Stat(ctx, "wigan", sum); st.Offset != 100_000 || st.ContentType != "image/jpeg" {
		t.Fatalf("stat after cut: %+v", st)
	}
	_, err = s.Write(ctx, "wigan", sum, ref, int64(len(data)), 0, bytes.NewReader(data))
	var oe *OffsetError
	if !errors.As(err, &oe) || oe.Want != 100_000 {
		t.Fatalf("wrong offset: %v", err)
	}
	info, err = s.Write(ctx, "wigan", sum, ref, int64(len(data)), 100_000, bytes.NewReader(data[100_000:]))
	if err != nil || !info.Complete {
		t.Fatalf("resumed write: %+v, %v", info, err)
	}
	f, _, err := s.Open(ctx, "wigan", sum)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
	// Another team knowing the hash finds nothing.
	if _, _, err := s.Open(ctx, "ashton", sum); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other team open: %v", err)
	}
	if s.Usage("wigan") != int64(len(data)) || s.Usage("ashton") != 0 {
		t.Fatalf("usage %d / %d", s.Usage("wigan"), s.Usage("ashton"))
	}
}

// Executables, HTML and bytes that do not hash to the name are refused
// and leave nothing behind; HEIC, PNG and PDF are accepted.
func TestWriteRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, Config{Dir: dir, MaxFileSize: 1 << 20, TeamQuota: 1 << 20})
	for name, head := range map[string][]byte{
		"pe":   []byte("MZ\x90\x00\x03"),
		"elf":  []byte("\x7fELF\x02\x01"),
		"html": []byte("<html><script>"),
		"mp4":  []byte("\x00\x00\x00\x18ftypisom"),
	} {
		b := append(head, bytes.Repeat([]byte{1}, 600)...)
		h := sha256.Sum256(b)
		_, err := s.Write(ctx, "wigan", hex.EncodeToString(h[:]), ref, int64(len(b)), 0, bytes.NewReader(b))
		if !errors.Is(err, ErrRefusedType) {
			t.Errorf("%s: err = %v, want ErrRefusedType", name, err)
		}
	}
	for name, head := range map[string][]byte{
		"heic": []byte("\x00\x00\x00\x18ftypheic"),
		"png":  []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
		"pdf":  []byte("%PDF-1.7\n"),
	} {
		b := append(head, bytes.Repeat([]byte{1}, 600)...)
		h := sha256.Sum256(b)
		if info, err := s.Write(ctx, "wigan", hex.EncodeToString(h[:]), ref, int64(len(b)), 0, bytes.NewReader(b)); err != nil || !info.Complete {
			t.Errorf("%s: %+v, %v", name, info, err)
		}
	}
	data, _ := jpeg(t, 1000)
	wrong := "00" + hex.EncodeToString(make([]byte, 31))
	if _, err := s.Write(ctx, "wigan", wrong, ref, 1000, 0, bytes.NewReader(data)); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("hash mismatch: %v", err)
	}
	if _, err := s.Stat(ctx, "wigan", wrong); !errors.Is(err, ErrNotFound) {
		t.Fatalf("mismatched upload kept: %v", err)
	}
	if _, err := s.Write(ctx, "wigan", wrong, ref, 2<<20, 0, bytes.NewReader(data)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	big, bigSum := jpeg(t, 1<<20)
	if _, err := s.Write(ctx, "wigan", bigSum, ref, int64(len(big)), 0, bytes.NewReader(big)); !errors.Is(err, ErrQuota) {
		t.Fatalf("quota: %v", err)
	}
	if _, err := s.Write(ctx, "wigan", bigSum, Ref{}, 1, 0, bytes.NewReader(big)); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("no ref: %v", err)
	}
	if _, err := s.Write(ctx, "wigan", "../../etc/passwd", ref, 1, 0, bytes.NewReader(big)); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("path hash: %v", err)
	}
}

// A blob attached to two records survives the erasure of one and leaves
// the disk with the other; usage follows.
func TestEraseRecords(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, Config{Dir: dir})
	data, sum := jpeg(t, 5000)
	other := Ref{Collection: "contacts", ID: "c2"}
	for _, r := range []Ref{ref, other} {
		if _, err := s.Write(ctx, "wigan", sum, r, int64(len(data)), 0, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := s.EraseRecords(ctx, "wigan", []Ref{ref}); err != nil || len(d) != 0 {
		t.Fatalf("erase one ref: %v, %v", d, err)
	}
	if _, err := s.Stat(ctx, "wigan", sum); err != nil {
		t.Fatal(err)
	}
	if d, err := s.EraseRecords(ctx, "wigan", []Ref{other}); err != nil || len(d) != 1 || d[0] != sum {
		t.Fatalf("erase last ref: %v, %v", d, err)
	}
	if s.Usage("wigan") != 0 {
		t.Fatalf("usage %d after erase", s.Usage("wigan"))
	}
	found := false
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, data[100:200]) || bytes.Contains([]byte(p), []byte(sum)) {
				found = true
			}
		}
		return nil
	})
	if found {
		t.Fatal("erased blob still on disk")
	}
	// Usage is recounted from disk on reopen.
	data2, sum2 := jpeg(t, 7000)
	if _, err := s.Write(ctx, "wigan", sum2, ref, int64(len(data2)), 0, bytes.NewReader(data2[:3000])); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, Config{Dir: dir})
	if s2.Usage("wigan") != 7000 {
		t.Fatalf("reopened usage %d, want 7000 (reserved upload)", s2.Usage("wigan"))
	}
}

// Concurrent writers of one upload (a cut request still draining while
// the device resumes) never interleave: each writes at the held offset or
// is told the right one, and the blob completes intact.
func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	s := open(t, Config{})
	data, sum := jpeg(t, 1<<20)
	done := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			for {
				st, err := s.Stat(ctx, "wigan", sum)
				off := st.Offset
				if errors.Is(err, ErrNotFound) {
					off = 0
				} else if err != nil {
					done <- err
					return
				}
				if st.Complete {
					done <- nil
					return
				}
				end := min(off+50_000, int64(len(data)))
				_, err = s.Write(ctx, "wigan", sum, ref, int64(len(data)), off, bytes.NewReader(data[off:end]))
				if err != nil && !errors.Is(err, ErrOffset) {
					done <- err
					return
				}
			}
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	f, _, err := s.Open(ctx, "wigan", sum)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, _ := io.ReadAll(f)
	if !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
	if len(s.locks) != 0 {
		t.Fatalf("%d lock entries left", len(s.locks))
	}
}
