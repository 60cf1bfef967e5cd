package blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
)

type item struct{ k, v []byte }

func export(t *testing.T, s *Store) []item {
	t.Helper()
	var out []item
	if err := s.Export(context.Background(), func(k, v []byte) error {
		out = append(out, item{bytes.Clone(k), bytes.Clone(v)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Export lists every complete blob of every team in ascending key order,
// in chunks, without unfinished uploads; Import into an empty store gives
// back the same blobs (served, counted) and exports identically.
func TestExportImport(t *testing.T) {
	ctx := context.Background()
	s := open(t, Config{})
	big, bigSum := jpeg(t, 2*ExportChunk+100)
	small, smallSum := jpeg(t, 5000)
	part, partSum := jpeg(t, 9000)
	for _, w := range []struct {
		team, sum string
		b         []byte
	}{{"wigan", bigSum, big}, {"wigan", smallSum, small}, {"ashton", smallSum, small}} {
		if _, err := s.Write(ctx, w.team, w.sum, ref, int64(len(w.b)), 0, bytes.NewReader(w.b)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Write(ctx, "wigan", partSum, ref, int64(len(part)), 0, bytes.NewReader(part[:4000])); err != nil {
		t.Fatal(err)
	}
	items := export(t, s)
	if len(items) != 3+1+2+2 { // big: 3 chunks + meta; small: chunk + meta, twice
		t.Fatalf("%d items", len(items))
	}
	for i := 1; i < len(items); i++ {
		if bytes.Compare(items[i-1].k, items[i].k) >= 0 {
			t.Fatalf("keys out of order: %q then %q", items[i-1].k, items[i].k)
		}
	}
	for _, it := range items {
		if bytes.Contains(it.k, []byte(partSum)) {
			t.Fatal("an unfinished upload was exported")
		}
	}

	d := open(t, Config{})
	im := d.Import()
	for _, it := range items {
		if err := im.Put(it.k, it.v); err != nil {
			t.Fatal(err)
		}
	}
	if err := im.Finish(); err != nil {
		t.Fatal(err)
	}
	f, info, err := d.Open(ctx, "wigan", bigSum)
	if err != nil || !info.Complete || info.ContentType != "image/jpeg" {
		t.Fatalf("restored blob: %+v %v", info, err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, big) {
		t.Fatal("restored bytes differ")
	}
	if d.Usage("wigan") != int64(len(big)+len(small)) || d.Usage("ashton") != int64(len(small)) {
		t.Fatalf("usage %d %d", d.Usage("wigan"), d.Usage("ashton"))
	}
	// Reopened, the usage is counted from disk the same; refs were kept, so
	// an erasure still finds the blob.
	d2 := open(t, Config{Dir: d.cfg.Dir})
	if d2.Usage("wigan") != d.Usage("wigan") {
		t.Fatalf("usage after reopen %d", d2.Usage("wigan"))
	}
	if del, err := d2.EraseRecords(ctx, "ashton", []Ref{ref}); err != nil || len(del) != 1 {
		t.Fatalf("erase after import: %v %v", del, err)
	}
	again := export(t, d)
	if len(again) != len(items)-2 {
		t.Fatalf("re-export %d items", len(again))
	}
}

// Import refuses bytes that do not hash to their name, a chunk out of
// order and metadata without bytes, keeping nothing of that file.
func TestImportRefusesTampering(t *testing.T) {
	ctx := context.Background()
	s := open(t, Config{})
	b, sum := jpeg(t, ExportChunk+10)
	if _, err := s.Write(ctx, "wigan", sum, ref, int64(len(b)), 0, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	items := export(t, s) // chunk 0, chunk 1, meta
	for name, mod := range map[string]func([]item) []item{
		"flipped byte":  func(it []item) []item { it[1].v[3] ^= 1; return it },
		"chunk dropped": func(it []item) []item { return append(it[:1:1], it[2]) },
		"no bytes":      func(it []item) []item { return it[2:] },
		"no metadata":   func(it []item) []item { return it[:2] },
	} {
		in := mod(append([]item(nil), cloneItems(items)...))
		d := open(t, Config{})
		im := d.Import()
		var err error
		for _, it := range in {
			if err = im.Put(it.k, it.v); err != nil {
				break
			}
		}
		if err == nil {
			err = im.Finish()
		}
		if !errors.Is(err, ErrImport) {
			t.Fatalf("%s: %v, want ErrImport", name, err)
		}
		if _, err := d.Stat(ctx, "wigan", sum); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: blob kept: %v", name, err)
		}
		if m, _ := filepath.Glob(filepath.Join(d.cfg.Dir, "*", "*", "*")); len(m) != 0 {
			t.Fatalf("%s: files left %v", name, m)
		}
	}
}

func cloneItems(in []item) []item {
	out := make([]item, len(in))
	for i, it := range in {
		out[i] = item{bytes.Clone(it.k), bytes.Clone(it.v)}
	}
	return out
}
