package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/doorstep-health/doorstep/schema"
)

// ExportVersion is the version of the item layout Export writes (a
// backup's "blobs" layout); a restore refuses a higher one.
const ExportVersion = 1

// ExportChunk is the most bytes of a file one exported item carries, so a
// backup never holds a whole file in memory.
const ExportChunk = 4 << 20

// ErrImport: an exported item is malformed, out of order, or a file's
// bytes do not hash to its name. Nothing is kept of that file.
var ErrImport = errors.New("blob: import")

// Export calls fn for every item of a backup of the store's complete
// blobs, in ascending key order (what a backup section needs):
//
//	<hex(team)> "/" <sha256> "/d" <u32 big-endian chunk index>  up to ExportChunk bytes of the file
//	<hex(team)> "/" <sha256> "/m"                               the metadata JSON (size, content type, refs, created)
//
// so each file's bytes come before its metadata and Import can check the
// hash before it keeps anything. Unfinished uploads are not exported (a
// device resumes them from byte 0 after a restore). The keys name teams
// and hashes, not paths: the export does not depend on the on-disk layout.
// fn's key and value alias buffers reused for the next item.
//
// Each blob is opened under its lock and then read without it, so a
// backup streamed to a slow client never holds up an upload or an erasure;
// a blob erased after it was opened is still exported whole (the erasure
// journal re-applies it on restore).
func (s *Store) Export(ctx context.Context, fn func(key, value []byte) error) error {
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("blob: export: %w", err)
	}
	var teams []string
	for _, e := range ents {
		if _, ok := teamOfDir(e.Name()); ok && e.IsDir() {
			teams = append(teams, e.Name())
		}
	}
	slices.Sort(teams) // by hex, which sorts the keys: "/" is below every hex digit
	buf := make([]byte, ExportChunk)
	var key []byte
	for _, td := range teams {
		team, _ := teamOfDir(td)
		sums, err := s.objectSums(team)
		if err != nil {
			return err
		}
		for _, sum := range sums {
			if err := ctx.Err(); err != nil {
				return err
			}
			f, m, err := s.openObject(ctx, team, sum)
			if errors.Is(err, ErrNotFound) {
				continue // erased since it was listed
			}
			if err != nil {
				return err
			}
			prefix := strings.TrimPrefix(td, "t-") + "/" + sum + "/"
			err = func() error {
				defer f.Close()
				var off int64
				for i := uint32(0); off < m.Size; i++ {
					n, err := io.ReadFull(f, buf[:min(int64(len(buf)), m.Size-off)])
					if err != nil {
						return fmt.Errorf("blob: export %s: read: %w", sum, err)
					}
					key = binary.BigEndian.AppendUint32(append(append(key[:0], prefix...), 'd'), i)
					if err := fn(key, buf[:n]); err != nil {
						return err
					}
					off += int64(n)
				}
				m.Enc = false // the backup holds plaintext; Import encrypts with its own key
				js, err := json.Marshal(m)
				if err != nil {
					return fmt.Errorf("blob: export: %w", err)
				}
				return fn(append(append(key[:0], prefix...), 'm'), js)
			}()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// objectSums lists the hashes of a team's complete blobs, sorted.
func (s *Store) objectSums(team string) ([]string, error) {
	var sums []string
	root := filepath.Join(s.cfg.Dir, teamDirName(team), "objects")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if sum, ok := strings.CutSuffix(d.Name(), ".json"); ok && !d.IsDir() && schema.IsSHA256(sum) {
			sums = append(sums, sum)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("blob: list %s: %w", team, err)
	}
	slices.Sort(sums)
	return sums, nil
}

// openObject opens a complete blob's plaintext and reads its metadata
// under the blob's lock.
func (s *Store) openObject(ctx context.Context, team, sum string) (*plainFile, meta, error) {
	unlock, err := s.lock(ctx, team+"\x00"+sum)
	if err != nil {
		return nil, meta{}, err
	}
	defer unlock()
	op := s.objectPath(team, sum)
	m, err := readMeta(op + ".json")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, meta{}, ErrNotFound
	}
	if err != nil {
		return nil, meta{}, err
	}
	f, err := s.openPlain(op, m)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, meta{}, ErrNotFound
	}
	if err != nil {
		return nil, meta{}, fmt.Errorf("blob: open: %w", err)
	}
	return f, m, nil
}

// Importer loads the items of an Export into a store (a restore into a
// new data directory). Items must arrive in the order Export made them;
// each file is written beside the store's uploads, its SHA-256 checked
// when its metadata arrives, and only then moved into place and counted
// against its team's usage.
type Importer struct {
	s         *Store
	team, sum string
	f         *os.File
	w         *plainWriter
	h         hash.Hash
	n         int64
	next      uint32
}

// Import returns an Importer into s.
func (s *Store) Import() *Importer { return &Importer{s: s} }

// Put takes one exported item; it does not keep key or value.
func (im *Importer) Put(key, value []byte) error {
	th, rest, ok1 := bytes.Cut(key, []byte("/"))
	sum, kind, ok2 := bytes.Cut(rest, []byte("/"))
	team, err := hex.DecodeString(string(th))
	if !ok1 || !ok2 || err != nil || len(team) == 0 || !schema.IsSHA256(string(sum)) || len(kind) == 0 {
		return fmt.Errorf("%w: bad key %q", ErrImport, clip(string(key)))
	}
	switch {
	case kind[0] == 'd' && len(kind) == 5:
		i := binary.BigEndian.Uint32(kind[1:])
		if string(team) != im.team || string(sum) != im.sum {
			if im.f != nil {
				return fmt.Errorf("%w: blob %s has no metadata", ErrImport, im.sum)
			}
			if i != 0 {
				return fmt.Errorf("%w: blob %s starts at chunk %d", ErrImport, sum, i)
			}
			if err := im.start(string(team), string(sum)); err != nil {
				return err
			}
		} else if im.f == nil || i != im.next {
			return fmt.Errorf("%w: blob %s: chunk %d out of order", ErrImport, sum, i)
		}
		if _, err := im.w.Write(value); err != nil {
			return fmt.Errorf("blob: import: %w", err)
		}
		im.h.Write(value)
		im.n += int64(len(value))
		im.next++
		return nil
	case string(kind) == "m":
		if im.f == nil || string(team) != im.team || string(sum) != im.sum {
			return fmt.Errorf("%w: metadata of %s without its bytes", ErrImport, sum)
		}
		var m meta
		if err := json.Unmarshal(value, &m); err != nil {
			return fmt.Errorf("%w: metadata of %s: %v", ErrImport, sum, err)
		}
		return im.finishFile(m)
	}
	return fmt.Errorf("%w: bad key %q", ErrImport, clip(string(key)))
}

func (im *Importer) start(team, sum string) error {
	up := im.s.uploadPath(team, sum)
	if err := os.MkdirAll(filepath.Dir(up), 0o700); err != nil {
		return fmt.Errorf("blob: import: %w", err)
	}
	f, err := os.OpenFile(up+".import", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("blob: import: %w", err)
	}
	var c fileCodec
	if im.s.block != nil {
		iv, err := newIV()
		if err != nil {
			f.Close()
			return err
		}
		if _, err := f.Write(iv); err != nil {
			f.Close()
			return fmt.Errorf("blob: import: %w", err)
		}
		c = fileCodec{block: im.s.block, iv: iv}
	}
	im.team, im.sum, im.f, im.h, im.n, im.next = team, sum, f, sha256.New(), 0, 0
	im.w = &plainWriter{f: f, c: c}
	return nil
}

func (im *Importer) finishFile(m meta) error {
	f, tmp := im.f, im.s.uploadPath(im.team, im.sum)+".import"
	im.f = nil
	if got := hex.EncodeToString(im.h.Sum(nil)); got != im.sum || im.n != m.Size {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("%w: blob %s: %d bytes hashing to %s, metadata says %d", ErrImport, im.sum, im.n, got, m.Size)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("blob: import: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blob: import: %w", err)
	}
	m.Enc = im.s.block != nil
	op := im.s.objectPath(im.team, im.sum)
	if err := os.MkdirAll(filepath.Dir(op), 0o700); err != nil {
		return fmt.Errorf("blob: import: %w", err)
	}
	if err := os.Rename(tmp, op); err != nil {
		return fmt.Errorf("blob: import: %w", err)
	}
	if err := writeMeta(op+".json", m); err != nil {
		return err
	}
	im.s.mu.Lock()
	im.s.usage[im.team] += m.Size
	im.s.mu.Unlock()
	return nil
}

// Finish checks that no file was left without its metadata and makes the
// directories durable.
func (im *Importer) Finish() error {
	if im.f != nil {
		im.f.Close()
		os.Remove(im.s.uploadPath(im.team, im.sum) + ".import")
		return fmt.Errorf("%w: blob %s has no metadata", ErrImport, im.sum)
	}
	return filepath.WalkDir(im.s.cfg.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return syncDir(p)
	})
}

// Cancel abandons an import, removing the file in progress.
func (im *Importer) Cancel() {
	if im.f != nil {
		im.f.Close()
		os.Remove(im.s.uploadPath(im.team, im.sum) + ".import")
		im.f = nil
	}
}

// TotalUsage is the bytes of every team's blobs and unfinished uploads
// (for a backup's size estimate).
func (s *Store) TotalUsage() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, u := range s.usage {
		n += u
	}
	return n
}
